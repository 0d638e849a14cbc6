"""Wiring of Sentry, JSON logs, Prometheus metrics and health endpoints into a Celery worker or beat, by signals."""

from __future__ import annotations

import atexit
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from celery import bootsteps, signals

from events.connection_state import ConnectionState
from events.redis_conn import connect
from workers.observability import metrics
from workers.observability.health import (
    HEARTBEAT_INTERVAL,
    REDIS_CACHE,
    CachedCheck,
    HealthServer,
    HealthState,
    start_health_server,
)
from workers.observability.logs import configure_logging
from workers.observability.sentry import init_sentry
from workspaces.registry import Registry
from workspaces.secrets import Keyring

__all__ = ["install", "uninstall"]

log = logging.getLogger(__name__)

ROLES = ("worker", "beat")


@dataclass
class _Wiring:
    """What install() set up in this process; the signal receivers act on it."""

    settings: Any
    role: str
    pid: int = field(default_factory=os.getpid)
    health_state: HealthState | None = None
    servers: list[Any] = field(default_factory=list)


_wiring: _Wiring | None = None


class LoopHeartbeat(bootsteps.StartStopStep):
    """A consumer bootstep whose timer proves the consumer's event loop still turns.

    Runs on the loop's own timer, so it stops when the loop hangs; unlike `heartbeat_sent`
    it also runs when a worker is started `--without-heartbeat` (common on Redis).
    """

    name = "sfsync.LoopHeartbeat"

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, parent: Any) -> None:
        if _wiring is not None and _wiring.health_state is not None:
            state = _wiring.health_state
            state.beat()
            self.tref = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL, state.beat)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


def install(app: Any, settings: Any, role: str) -> None:
    """Wire Sentry, JSON logging, metrics and health into `app` for this process.

    Call once in the main process before the worker (or beat) object is created, e.g. in
    `sfsync worker` just before `app.Worker(...).start()`; the servers themselves start on
    `worker_init` / `beat_init`, and prefork children are handled by their own signals.
    """
    global _wiring
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    _wiring = _Wiring(settings=settings, role=role)

    configure_logging(settings.log_level)
    # Celery would otherwise replace the root logger's handlers with its own plain format;
    # a setup_logging receiver alone makes Celery leave logging to us, the flag is belt and braces.
    app.conf.worker_hijack_root_logger = False
    _connect("setup_logging")

    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    # Initialised in the main process: prefork children inherit the client, and its
    # transport restarts its sending thread in each child (it checks the pid).
    if init_sentry(dsn, environment=settings.environment):
        log.info("sentry error reporting on (environment %s)", settings.environment)

    if settings.metrics_port:
        if role == "worker":
            metrics.enable(metrics.prepare_multiprocess_dir())
            atexit.register(metrics.cleanup_multiprocess_dir)
        else:
            metrics.enable()
    if settings.health_port:
        _wiring.health_state = HealthState(heartbeat_required=(role == "worker"))
        if role == "worker":
            app.steps["consumer"].add(LoopHeartbeat)
            connections = SalesforceReadiness.for_settings(settings)
            _wiring.health_state.checks.append(connections.reason)
            _wiring.health_state.notes.append(connections.note)

    if role == "worker":
        # Heart decides at construction whether anyone listens to heartbeat_sent, so every
        # receiver is connected before the worker exists
        for name in _WORKER_SIGNALS:
            _connect(name)
    else:
        _connect("beat_init")
        atexit.register(_on_shutdown)


#: disconnected workspaces /readyz names one by one; beyond, it says how many more
READYZ_NAMED = 20


class SalesforceReadiness:
    """/readyz and the orgs' connection states (`events.connection_state`), read at most every few seconds.

    One workspace from the environment (no registry): its org disconnected makes the worker
    unready, since it can do nothing useful. Registered workspaces: one org disconnected (a
    customer's revoked token) must not take every worker of the fleet out of service, so the
    worker stays ready and /readyz lists the disconnected workspaces in its `detail`.
    """

    def __init__(self, client: Any, env_workspace: str, *, env_served: bool = True, every: float = REDIS_CACHE):
        self.client, self.env_workspace, self.env_served = client, env_workspace, env_served
        self.state = ConnectionState(client)
        self._verdict = CachedCheck(self._read, every)

    @classmethod
    def for_settings(cls, settings: Any) -> "SalesforceReadiness":
        return cls(connect(settings.redis_url.get_secret_value(), socket_timeout=1.0), settings.workspace_id,
                   env_served=settings.salesforce_auth is not None)

    def reason(self) -> str | None:
        """Why the worker is not ready, or None."""
        return self._verdict()[0]

    def note(self) -> str | None:
        """The disconnected registered workspaces, for a ready worker's /readyz, or None."""
        return self._verdict()[1]

    def _read(self) -> tuple[str | None, str | None]:
        registered = Registry(self.client, Keyring(None)).ids()
        if not registered:
            return self.state.lost_reason(self.env_workspace), None
        served = sorted({*registered, *([self.env_workspace] if self.env_served else [])})
        now = time.time()
        lost = {ws: state for ws, state in self.state.read_many(served).items()
                if state and state.get("state") == "disconnected"}
        if not lost:
            return None, None
        named = [f"{ws} ({state.get('code') or 'unknown'}, {now - float(state.get('since') or now):.0f}s)"
                 for ws, state in sorted(lost.items())[:READYZ_NAMED]]
        more = f" and {len(lost) - READYZ_NAMED} more" if len(lost) > READYZ_NAMED else ""
        return None, (f"salesforce disconnected in {len(lost)} of {len(served)} workspace(s): "
                      f"{', '.join(named)}{more}")


def health_state() -> HealthState | None:
    """This process's health state (None without SFSYNC_HEALTH_PORT), e.g. to say why start-up waits."""
    return _wiring.health_state if _wiring is not None else None


def start_servers() -> None:
    """Serve metrics and health now (before the worker exists), e.g. while start-up waits for Salesforce."""
    _start_servers()


def _connect(name: str) -> None:
    getattr(signals, name).connect(_receivers()[name], weak=False, dispatch_uid=f"sfsync.{name}")


def _receivers() -> dict:
    """Celery signal name -> this module's receiver; each connected with dispatch_uid sfsync.<signal>."""
    return {
        "setup_logging": _on_setup_logging, "worker_init": _start_servers, "worker_process_init": _on_child_start,
        "worker_ready": _on_ready, "heartbeat_sent": _on_heartbeat, "worker_shutting_down": _on_stopping,
        "worker_process_shutdown": _on_child_exit, "worker_shutdown": _on_shutdown, "beat_init": _on_beat_init,
    }


_WORKER_SIGNALS = ("worker_init", "worker_process_init", "worker_ready", "heartbeat_sent", "worker_shutting_down",
                   "worker_process_shutdown", "worker_shutdown")


def uninstall() -> None:
    """Undo install() in this process: stop servers, disconnect receivers (tests, embedded use)."""
    global _wiring
    _on_shutdown()
    for name in _receivers():
        getattr(signals, name).disconnect(dispatch_uid=f"sfsync.{name}")
    metrics.disable()
    _wiring = None


# --- Signal receivers. Celery calls them with (sender, signal, **kwargs).

def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    """setup_logging: Celery's `--loglevel`, else SFSYNC_LOG_LEVEL; our handler, not Celery's."""
    if _wiring is not None:
        configure_logging(loglevel or _wiring.settings.log_level)


def _start_servers(**_: Any) -> None:
    """worker_init / beat_init, main process: serve /metrics and /livez, /readyz."""
    wiring = _wiring
    if wiring is None or wiring.servers:
        return
    settings = wiring.settings
    if settings.metrics_port and metrics.enabled():
        wiring.servers.append(metrics.start_metrics_server(settings.metrics_port, settings.monitoring_host))
        log.info("metrics on %s port %d: /metrics", settings.monitoring_host, settings.metrics_port)
    if settings.health_port and wiring.health_state is not None:
        wiring.servers.append(start_health_server(
            settings.redis_url.get_secret_value(), settings.health_port, wiring.health_state,
            host=settings.monitoring_host))


def _on_beat_init(**_: Any) -> None:
    _start_servers()
    _on_ready()


def _on_child_start(**_: Any) -> None:
    """worker_process_init, in each prefork child: let go of the parent's listening sockets.

    A forked child holds copies of them; closing ours means the port is free as soon as the
    main process exits, even if a child lingers. The servers keep running in the parent.
    """
    # the solo pool sends this signal in the main process itself, where the servers must stay
    if _wiring is not None and os.getpid() != _wiring.pid:
        for server in _wiring.servers:
            server.socket.close()
        _wiring.servers = []


def _on_ready(**_: Any) -> None:
    if _wiring is not None and _wiring.health_state is not None:
        _wiring.health_state.mark_ready()


def _on_heartbeat(**_: Any) -> None:
    if _wiring is not None and _wiring.health_state is not None:
        _wiring.health_state.beat()


def _on_stopping(**_: Any) -> None:
    if _wiring is not None and _wiring.health_state is not None:
        _wiring.health_state.mark_stopping()


def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    """worker_process_shutdown: a prefork child ends; its live gauges must stop counting."""
    if pid is not None:
        metrics.mark_process_dead(pid)


def _on_shutdown(**_: Any) -> None:
    """worker_shutdown / beat exit, main process: stop the servers, remove the metric files."""
    if _wiring is not None:
        for server in _wiring.servers:
            if isinstance(server, HealthServer):
                server.stop()
            else:
                server.shutdown()
                server.server_close()
        _wiring.servers = []
    metrics.cleanup_multiprocess_dir()
    sentry_sdk.flush(timeout=2.0)

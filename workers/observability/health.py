"""Liveness (/livez) and readiness (/readyz) over HTTP from the worker's main process, for orchestrators."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Generic, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from events.redis_conn import connect
from workers.observability.redact import scrub_text

log = logging.getLogger(__name__)

#: seconds; Redis must answer PING within this for the worker to be ready
REDIS_TIMEOUT = 1.0
#: seconds; a readiness verdict is reused this long, so probes cannot flood Redis
REDIS_CACHE = 2.0
#: seconds; the consumer loop beats every HEARTBEAT_INTERVAL, so this is many missed beats
LIVENESS_TIMEOUT = 60.0
#: seconds the consumer loop waits between two heartbeats
HEARTBEAT_INTERVAL = 2.0
#: seconds a worker may take from process start to "ready" while Redis answers
STARTUP_TIMEOUT = 300.0


class HealthState:
    """What the worker has told us: started, ready, stopping, and its loop's last heartbeat.

    Thread-safe enough by construction: each field is a single float/bool assignment.
    """

    def __init__(self, *, heartbeat_required: bool = True, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.heartbeat_required = heartbeat_required
        self.started_at = clock()
        self.ready_at: float | None = None
        self.last_beat: float | None = None
        self.stopping = False
        #: why start-up waits (Salesforce unreachable); the worker is alive but not ready meanwhile
        self.waiting_for: str | None = None
        #: further reasons not to be ready (each returns a reason, or None when all is well)
        self.checks: list[Callable[[], str | None]] = []
        #: what /readyz reports without being unready (each returns a line, or None when there is nothing to say)
        self.notes: list[Callable[[], str | None]] = []

    def wait_for(self, reason: str | None) -> None:
        self.waiting_for = reason

    def beat(self, *_: Any, **__: Any) -> None:
        """The consumer loop is turning; called from its timer and from `heartbeat_sent`."""
        self.last_beat = self.clock()

    def mark_ready(self, *_: Any, **__: Any) -> None:
        self.ready_at = self.clock()

    def mark_stopping(self, *_: Any, **__: Any) -> None:
        self.stopping = True

    def heartbeat_age(self) -> float:
        since = max(t for t in (self.last_beat, self.ready_at, self.started_at) if t is not None)
        return self.clock() - since


@dataclass(frozen=True)
class RedisVerdict:
    ok: bool
    detail: str
    checked_at: float


class RedisCheck:
    """PING Redis with a short timeout, remembering the answer for a couple of seconds."""

    def __init__(self, redis_url: str, *, timeout: float = REDIS_TIMEOUT, cache: float = REDIS_CACHE,
                 clock: Callable[[], float] = time.monotonic):
        # No retries: redis-py's default retry with backoff would turn "down" into many seconds.
        self.client = connect(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                              retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self.timeout = timeout
        self.cache = cache
        self.clock = clock
        self._lock = threading.Lock()
        self._last: RedisVerdict | None = None

    def verdict(self) -> RedisVerdict:
        with self._lock:  # one PING at a time; concurrent probes share its answer
            now = self.clock()
            if self._last is not None and now - self._last.checked_at < self.cache:
                return self._last
            started = time.monotonic()
            try:
                self.client.ping()
                elapsed = time.monotonic() - started
                if elapsed > self.timeout:
                    self._last = RedisVerdict(False, f"redis answered PING after {elapsed:.2f}s", now)
                else:
                    self._last = RedisVerdict(True, f"redis answered PING in {elapsed * 1000:.0f}ms", now)
            except redis.RedisError as exc:
                # the class name and message say refused/timeout/auth; scrubbed in case a
                # message ever quotes the URL with its password
                self._last = RedisVerdict(
                    False, scrub_text(f"redis unreachable: {type(exc).__name__}: {exc}"), now)
            return self._last

    def close(self) -> None:
        self.client.close()


class Health:
    """The verdicts the endpoints serve, from a HealthState and a RedisCheck."""

    def __init__(self, state: HealthState, redis_check: RedisCheck, *,
                 liveness_timeout: float = LIVENESS_TIMEOUT, startup_timeout: float = STARTUP_TIMEOUT):
        self.state = state
        self.redis = redis_check
        self.liveness_timeout = liveness_timeout
        self.startup_timeout = startup_timeout

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        if self.state.stopping:
            return False, {"status": "not ready", "reason": "worker is shutting down"}
        if self.state.waiting_for:
            return False, {"status": "not ready", "reason": self.state.waiting_for}
        if self.state.ready_at is None:
            return False, {"status": "not ready", "reason": "worker is still starting"}
        verdict = self.redis.verdict()
        if not verdict.ok:
            return False, {"status": "not ready", "reason": verdict.detail}
        for check in self.state.checks:
            reason = _safe(check)
            if reason:
                return False, {"status": "not ready", "reason": reason, "redis": verdict.detail}
        body: dict[str, Any] = {"status": "ready", "redis": verdict.detail}
        notes = [note for note in map(_safe, self.state.notes) if note]
        if notes:
            body["detail"] = "; ".join(notes)
        return True, body

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        state = self.state
        age = state.heartbeat_age()
        body: dict[str, Any] = {"heartbeat_age_seconds": round(age, 3)}
        if not state.heartbeat_required or state.stopping:
            return True, {"status": "alive", **body}
        if state.ready_at is None and state.waiting_for:
            # a restart would not bring Salesforce back: waiting is alive, only not ready
            return True, {"status": "alive", "reason": state.waiting_for, **body}
        if state.ready_at is None:
            starting = state.clock() - state.started_at
            if starting <= self.startup_timeout:
                return True, {"status": "alive", "reason": "starting", **body}
        elif age <= self.liveness_timeout:
            return True, {"status": "alive", **body}
        # A consumer whose Redis is gone sits in its reconnect loop and beats no more; a
        # restart would not bring Redis back, so that is "not ready", not "dead".
        verdict = self.redis.verdict()
        if not verdict.ok:
            return True, {"status": "alive", "reason": f"waiting for redis ({verdict.detail})", **body}
        reason = ("worker did not become ready within "
                  f"{self.startup_timeout:.0f}s" if state.ready_at is None else
                  f"consumer loop silent for {age:.0f}s (limit {self.liveness_timeout:.0f}s)")
        return False, {"status": "dead", "reason": reason, **body}


def _safe(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - a failing check must not take the endpoint down
        return scrub_text(f"readiness check failed: {type(exc).__name__}: {exc}")


_T = TypeVar("_T")


class CachedCheck(Generic[_T]):
    """A readiness check asked at most once every `every` seconds (probes must not flood Redis)."""

    def __init__(self, check: Callable[[], _T], every: float = REDIS_CACHE,
                 clock: Callable[[], float] = time.monotonic):
        self.check, self.every, self.clock = check, every, clock
        self._at: float | None = None
        self._value: _T | None = None

    def __call__(self) -> _T:
        now = self.clock()
        if self._at is None or now - self._at >= self.every:
            self._value, self._at = self.check(), now
        return cast(_T, self._value)  # set by the first call


class _Handler(BaseHTTPRequestHandler):
    server: "HealthServer"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/livez":
            ok, body = self.server.health.liveness()
        elif path == "/readyz":
            ok, body = self.server.health.readiness()
        else:
            self._send(404, {"status": "not found", "endpoints": ["/livez", "/readyz"]})
            return
        self._send(200 if ok else 503, body)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # a probe every few seconds is not worth a log line
        return


class HealthServer(ThreadingHTTPServer):
    """A tiny HTTP server on its own daemon thread; `port=0` picks a free port (tests)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, health: Health, port: int, host: str = "0.0.0.0"):
        super().__init__((host, port), _Handler)
        self.health = health
        self.thread = threading.Thread(target=self.serve_forever, name="sfsync-health", daemon=True,
                                       kwargs={"poll_interval": 0.5})

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "HealthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.health.redis.close()


def start_health_server(redis_url: str, port: int, state: HealthState, host: str = "0.0.0.0",
                        **limits: float) -> HealthServer:
    """Serve /livez and /readyz for `state`, checking Redis at `redis_url`."""
    server = HealthServer(Health(state, RedisCheck(redis_url), **limits), port, host).start()
    log.info("health endpoints on port %d: /livez /readyz", server.port)
    return server

"""Prometheus metrics of the sync, safe across Celery's prefork children, and the server that exposes them."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import start_http_server

#: The outcomes an event can end with; `sfsync_events_total{outcome}` takes only these.
OUTCOMES = ("written", "written_late", "duplicate", "skipped_no_contact", "skipped_already_logged", "retried",
            "dead_lettered", "parked")

#: seconds; Salesforce composite writes of up to 200 records
WRITE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class _Metrics:
    events: Counter
    write_seconds: Histogram
    retries: Counter
    dead_letters: Gauge
    dead_letters_dropped: Counter
    parked: Gauge
    api_used: Gauge
    api_limit: Gauge
    connected: Gauge
    oldest_unacked: Gauge
    salesforce_calls: Counter
    crm_lag: Gauge
    crm_last_success: Gauge
    crm_cycles: Counter
    handed_back: Counter


_metrics: _Metrics | None = None
_own_registry: CollectorRegistry | None = None
#: (directory, pid that created it): only the creating process removes a directory it made.
_owned_dir: tuple[str, int] | None = None


def _build(registry: CollectorRegistry | None) -> _Metrics:
    # "mostrecent": a state gauge (queue sizes, API usage) is whatever the last process that
    # looked saw, not a sum over the prefork children that happened to look.
    state: dict[str, Any] = {"registry": registry, "multiprocess_mode": "mostrecent"}
    return _Metrics(
        events=Counter("sfsync_events_total", "Events by type and how they ended",
                       ["type", "outcome"], registry=registry),
        write_seconds=Histogram("sfsync_write_seconds", "Latency of one Salesforce write call",
                                buckets=WRITE_BUCKETS, registry=registry),
        retries=Counter("sfsync_retries_total", "Retries scheduled, by Salesforce error code",
                        ["code"], registry=registry),
        dead_letters=Gauge("sfsync_dead_letters", "Events in the dead-letter store", **state),
        # one label value per workspace with dead letters, plus `_unrouted`: bounded by the workspaces served
        dead_letters_dropped=Counter("sfsync_dead_letters_dropped",
                                     "Dead letters dropped by retention (max age or max count per workspace)",
                                     ["workspace"], registry=registry),
        parked=Gauge("sfsync_parked", "Events parked (API allowance, lost session, org unavailable), by workspace",
                     ["workspace"], **state),
        api_used=Gauge("sfsync_salesforce_api_used", "Daily API requests used (Sforce-Limit-Info), by workspace",
                       ["workspace"], **state),
        api_limit=Gauge("sfsync_salesforce_api_limit", "Daily API request allowance of the org, by workspace",
                        ["workspace"], **state),
        connected=Gauge("sfsync_salesforce_connected",
                        "1 while the workspace's org answers with the credentials held, 0 while they cannot be "
                        "renewed", ["workspace"], **state),
        oldest_unacked=Gauge("sfsync_oldest_unacked_seconds",
                             "Seconds since the oldest unacknowledged message was delivered or had its lease "
                             "renewed; above the visibility timeout its worker is gone", **state),
        salesforce_calls=Counter("sfsync_salesforce_calls", "Salesforce REST calls made, by kind",
                                 ["kind"], registry=registry),
        crm_lag=Gauge("sfsync_crm_cycle_lag_seconds",
                      "How far the CRM sync watermark trails now, at the end of the last cycle", **state),
        crm_last_success=Gauge("sfsync_crm_cycle_last_success_timestamp",
                               "Unix time the last CRM sync cycle succeeded",
                               registry=registry, multiprocess_mode="max"),
        crm_cycles=Counter("sfsync_crm_cycles", "CRM sync cycles run, by result", ["result"],
                           registry=registry),
        handed_back=Counter("sfsync_batches_handed_back", "Batches the consumer handed back to their queues "
                            "unfinished: their pool process died, or the pool dropped them when the broker "
                            "connection was lost", ["reason"], registry=registry),
    )


def prepare_multiprocess_dir(directory: str | None = None) -> str:
    """Choose and empty the directory prefork children share their metric files through.

    An operator's PROMETHEUS_MULTIPROC_DIR is honoured (and its stale files removed, as
    prometheus_client requires between runs); otherwise a fresh temporary directory is made
    and removed again by `cleanup_multiprocess_dir`.
    """
    global _owned_dir
    directory = directory or os.environ.get(_ENV)
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
    else:
        directory = tempfile.mkdtemp(prefix="sfsync-metrics-")
        _owned_dir = (directory, os.getpid())
    os.environ[_ENV] = directory
    return directory


def enable(multiprocess_dir: str | None = None) -> None:
    """Create the metrics; before this, every record_* function is a no-op.

    With a multiprocess directory each process writes its own mmap file there and the
    server merges them; call this in the worker's main process before the pool forks.
    Without one (beat, tests) the metrics live in a registry of this process alone.
    """
    global _metrics, _own_registry
    if multiprocess_dir:
        os.environ[_ENV] = multiprocess_dir
        # prometheus_client picks its value class once, at import; re-pick it now that the
        # directory is known, whoever imported prometheus_client first.
        values.ValueClass = values.get_value_class()
        _own_registry = None
        _metrics = _build(registry=None)
    else:
        _own_registry = CollectorRegistry()
        _metrics = _build(registry=_own_registry)


def disable() -> None:
    """Forget the metrics (tests, and a process that stops serving them)."""
    global _metrics, _own_registry
    _metrics = None
    _own_registry = None


def enabled() -> bool:
    return _metrics is not None


def registry() -> CollectorRegistry:
    """The registry to expose: the merged files of every process, or this process's own."""
    if _own_registry is not None:
        return _own_registry
    directory = os.environ.get(_ENV)
    if directory and os.path.isdir(directory):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)
        return merged
    raise RuntimeError("metrics are not enabled")


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve /metrics on `port` from a daemon thread; returns the HTTP server."""
    server, _thread = start_http_server(port, addr=addr, registry=registry())
    return server


def mark_process_dead(pid: int) -> None:
    """Drop a finished prefork child's live-gauge file so its last values stop counting."""
    directory = os.environ.get(_ENV)
    if directory and os.path.isdir(directory):
        multiprocess.mark_process_dead(pid, directory)


def cleanup_multiprocess_dir() -> None:
    """Remove the temporary directory `prepare_multiprocess_dir` made, from the process that made it."""
    global _owned_dir
    if _owned_dir and _owned_dir[1] == os.getpid():
        shutil.rmtree(_owned_dir[0], ignore_errors=True)
        if os.environ.get(_ENV) == _owned_dir[0]:
            del os.environ[_ENV]
        _owned_dir = None


# --- Recording. Each is a cheap no-op while metrics are not enabled, so domain code and
# tasks call them unconditionally.

def record_outcome(event_type: str, outcome: str, n: int = 1) -> None:
    """Count `n` events of `event_type` that ended with `outcome` (one of OUTCOMES)."""
    if _metrics is not None and n:
        _metrics.events.labels(event_type, outcome).inc(n)


def observe_write(seconds: float) -> None:
    """Record the latency of one Salesforce write call."""
    if _metrics is not None:
        _metrics.write_seconds.observe(seconds)


def record_retry(code: str, n: int = 1) -> None:
    """Count retries scheduled after a transient Salesforce error `code`."""
    if _metrics is not None and n:
        _metrics.retries.labels(code or "UNKNOWN").inc(n)


def record_salesforce_call(kind: str, n: int = 1) -> None:
    """Count Salesforce REST calls by kind (query, composite, create, update, describe, limits...)."""
    if _metrics is not None and n:
        _metrics.salesforce_calls.labels(kind).inc(n)


def set_dead_letters(count: int) -> None:
    if _metrics is not None:
        _metrics.dead_letters.set(count)


def record_dead_letters_dropped(workspace: str, n: int = 1) -> None:
    """Count `n` dead letters of `workspace` (a dead-letter bucket: a known workspace or `_unrouted`) dropped by retention."""
    if _metrics is not None and n:
        _metrics.dead_letters_dropped.labels(workspace).inc(n)


def set_parked(count: int, workspace: str = "default") -> None:
    if _metrics is not None:
        _metrics.parked.labels(workspace).set(count)


def set_api_usage(used: int, limit: int, workspace: str = "default") -> None:
    """Record the org's daily API usage, as read from the Sforce-Limit-Info header or /limits."""
    if _metrics is not None:
        _metrics.api_used.labels(workspace).set(used)
        _metrics.api_limit.labels(workspace).set(limit)


def set_connected(connected: bool, workspace: str = "default") -> None:
    if _metrics is not None:
        _metrics.connected.labels(workspace).set(1 if connected else 0)


def set_oldest_unacked(seconds: float | None) -> None:
    """Record the age of the oldest unacknowledged message (`workers.status.oldest_unacked_seconds`); None: none."""
    if _metrics is not None:
        _metrics.oldest_unacked.set(seconds or 0.0)


def record_crm_cycle(lag: float | None, ok: bool) -> None:
    """Record the end of one CRM sync cycle: its watermark lag in seconds, and success."""
    if _metrics is None:
        return
    _metrics.crm_cycles.labels("ok" if ok else "failed").inc()
    if lag is not None:
        _metrics.crm_lag.set(lag)
    if ok:
        _metrics.crm_last_success.set(time.time())


#: why a batch went back to its queues unfinished (`sfsync_batches_handed_back_total{reason}`)
HANDED_BACK_REASONS = ("process_lost", "dropped_by_pool")


def record_handed_back(reason: str) -> None:
    """Record a batch handed back to its queues unfinished (`reason`: one of HANDED_BACK_REASONS)."""
    if _metrics is not None and reason in HANDED_BACK_REASONS:
        _metrics.handed_back.labels(reason).inc()

"""Injected faults: outages, limit errors, row locks, latency and dead sessions on matching data calls."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .errors import ApiError

KINDS = ("outage", "request_limit", "daily_limit", "unable_to_lock_row", "latency", "invalid_session")


@dataclass
class Fault:
    id: str
    kind: str
    method: str = "*"
    path: str = ".*"
    count: int | None = None
    seconds: float | None = None
    latency_ms: int | None = None
    created: float = field(default_factory=time.monotonic)
    hits: int = 0

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def live(self) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        return self.seconds is None or time.monotonic() - self.created < self.seconds

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and self._pattern.search(path) is not None and self.live()

    def describe(self) -> dict:
        return {"id": self.id, "kind": self.kind, "method": self.method, "path": self.path, "count": self.count,
                "seconds": self.seconds, "latency_ms": self.latency_ms, "hits": self.hits, "active": self.live()}


def fault_from_json(fault_id: str, body: dict) -> Fault:
    """Validates an admin fault definition; raises ValueError with a readable reason."""
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    method = str(body.get("method") or "*").upper()
    path = body.get("path") or ".*"
    try:
        re.compile(path)
    except re.error as exc:
        raise ValueError(f"path is not a valid regular expression: {exc}") from None
    count, seconds, latency = body.get("count"), body.get("seconds"), body.get("latency_ms")
    for name, value in (("count", count), ("seconds", seconds), ("latency_ms", latency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name} must be a non-negative number or null")
    if kind == "latency" and not latency:
        raise ValueError("latency faults need latency_ms")
    return Fault(fault_id, kind, method, path, count, seconds, latency)


class FaultBook:
    """The active faults, in the order they were added."""

    def __init__(self):
        self.faults: dict[str, Fault] = {}
        self._next = 0

    def add(self, body: dict) -> Fault:
        self._next += 1
        fault = fault_from_json(f"fault-{self._next}", body)
        self.faults[fault.id] = fault
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take(self, method: str, path: str) -> tuple[float, Fault | None]:
        """Latency to add and the first failing fault for this call; each use spends one of its count."""
        delay = 0.0
        failing = None
        for fault in self.faults.values():
            if not fault.matches(method, path):
                continue
            if fault.kind == "latency":
                fault.hits += 1
                delay += (fault.latency_ms or 0) / 1000
            elif failing is None:
                fault.hits += 1
                failing = fault
        return delay, failing


def fault_error(fault: Fault) -> ApiError:
    if fault.kind == "outage":
        return ApiError("SERVER_UNAVAILABLE", "Server temporarily unavailable (emulated outage).", status=503)
    if fault.kind == "request_limit":
        return ApiError("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", status=403)
    if fault.kind == "daily_limit":
        return ApiError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", status=403)
    if fault.kind == "invalid_session":
        return ApiError("INVALID_SESSION_ID", "Session expired or invalid", status=401)
    return ApiError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", status=400)

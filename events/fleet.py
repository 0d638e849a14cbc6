"""The fleet: every worker, beat and console process says it is alive in Redis, and the console lists them.

Each process beats every HEARTBEAT seconds into its own hash `sfsync:fleet:<id>` (kind, host,
pid, version, started, last beat, batches in flight, workspaces served) and the sorted set
`sfsync:fleet` (id -> last beat). A process that has not beaten for STALE_AFTER seconds is
shown as stale (killed, frozen or cut off from Redis); one stopped cleanly says so. The hash
expires FORGET_AFTER seconds after the last beat, and the set forgets what has no hash left.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from events.keys import PREFIX

#: seconds between two beats of a process
HEARTBEAT = 5.0
#: seconds without a beat after which a process is shown as stale (two beats missed)
STALE_AFTER = 2 * HEARTBEAT
#: seconds a process that stopped beating stays listed (as stale, or as stopped)
FORGET_AFTER = 3600
#: seconds a process that stopped cleanly stays listed
FORGET_STOPPED_AFTER = 600
INDEX = f"{PREFIX}:fleet"
KINDS = ("worker", "beat", "console")
#: workspaces listed per process (a worker may serve thousands; the count is kept whole)
WORKSPACES_SHOWN = 50


def member_key(member_id: str) -> str:
    return f"{PREFIX}:fleet:{member_id}"


def own_id(kind: str) -> str:
    """This process's id in the fleet: kind, host and pid."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


@dataclass
class Member:
    """One process as the console shows it."""

    id: str
    kind: str
    host: str
    pid: int
    version: str
    started: float
    last_beat: float
    batches_in_flight: int | None = None
    concurrency: int | None = None
    workspaces: list[str] = field(default_factory=list)
    workspaces_total: int = 0
    stopped: bool = False

    def age(self, now: float) -> float:
        return max(now - self.last_beat, 0.0)

    def state(self, now: float) -> str:
        """alive, stale (no beat for STALE_AFTER seconds) or stopped (it said goodbye)."""
        if self.stopped:
            return "stopped"
        return "stale" if self.age(now) > STALE_AFTER else "alive"

    @classmethod
    def parse(cls, member_id: str, raw: dict[str, str]) -> "Member | None":
        try:
            served = [w for w in raw.get("workspaces", "").split(",") if w]
            return cls(id=member_id, kind=raw["kind"], host=raw["host"], pid=int(raw["pid"]),
                       version=raw.get("version", ""), started=float(raw["started"]), last_beat=float(raw["last"]),
                       batches_in_flight=int(raw["in_flight"]) if raw.get("in_flight") else None,
                       concurrency=int(raw["concurrency"]) if raw.get("concurrency") else None,
                       workspaces=served, workspaces_total=int(raw.get("workspaces_total") or len(served)),
                       stopped=raw.get("stopped") == "1")
        except (KeyError, ValueError):
            return None


class Fleet:
    """Heartbeats in Redis (see the module's docstring)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def beat(self, member_id: str, *, kind: str, started: float, version: str, in_flight: int | None = None,
             concurrency: int | None = None, workspaces: list[str] | None = None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        host, _, pid = member_id.split(":", 1)[1].rpartition(":")
        fields: dict[str, Any] = {"kind": kind, "host": host, "pid": pid, "version": version,
                                  "started": f"{started:.3f}", "last": f"{now:.3f}", "stopped": "0"}
        if in_flight is not None:
            fields["in_flight"] = int(in_flight)
        if concurrency is not None:
            fields["concurrency"] = int(concurrency)
        if workspaces is not None:
            served = sorted(workspaces)
            fields["workspaces"] = ",".join(served[:WORKSPACES_SHOWN])
            fields["workspaces_total"] = len(served)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(member_key(member_id), mapping=fields)
        pipe.expire(member_key(member_id), FORGET_AFTER)
        pipe.zadd(INDEX, {member_id: now})
        pipe.execute()

    def leave(self, member_id: str, now: float | None = None) -> None:
        """A clean stop: listed as stopped for a while, then forgotten."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(member_key(member_id), mapping={"stopped": "1", "last": f"{now:.3f}", "in_flight": 0})
        pipe.expire(member_key(member_id), FORGET_STOPPED_AFTER)
        pipe.execute()

    def members(self) -> list[Member]:
        """Every process listed, by kind then host and pid; what has expired is forgotten here."""
        ids = self.redis.zrange(INDEX, 0, -1)
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for member_id in ids:
            pipe.hgetall(member_key(member_id))
        found, gone = [], []
        for member_id, raw in zip(ids, pipe.execute()):
            member = Member.parse(member_id, raw) if raw else None
            if member is None:
                gone.append(member_id)
            else:
                found.append(member)
        if gone:
            self.redis.zrem(INDEX, *gone)
        order = {kind: n for n, kind in enumerate(KINDS)}
        return sorted(found, key=lambda m: (order.get(m.kind, len(KINDS)), m.host, m.pid))


def summary(members: list[Member], now: float | None = None) -> dict[str, dict[str, int]]:
    """Per kind, how many processes are alive, stale and stopped."""
    now = time.time() if now is None else now
    out: dict[str, dict[str, int]] = {kind: {"alive": 0, "stale": 0, "stopped": 0} for kind in KINDS}
    for member in members:
        out.setdefault(member.kind, {"alive": 0, "stale": 0, "stopped": 0})[member.state(now)] += 1
    return out

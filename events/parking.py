"""Parked work and the API-usage gauge: long waits are kept in Redis, not held as in-flight messages."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from events.keys import key

#: parked messages taken per release run, so one release cannot flood the queues after a long stop
RELEASE_CHUNK = 1000


def due_at(now: float, wait: float) -> float:
    """Epoch seconds at which work parked at `now` for `wait` seconds may be released."""
    if wait < 0:
        raise ValueError("a parking wait cannot be negative")
    return now + wait


@dataclass(frozen=True)
class ParkedMessage:
    """The original message argument, its retry meta and where it goes back to."""

    task_name: str
    queue: str
    raw: Any
    meta: dict[str, Any]
    reason: str
    parked_at: float = field(default_factory=time.time)
    #: makes two parkings of identical content two members of the sorted set
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> str:
        return json.dumps({"task_name": self.task_name, "queue": self.queue, "raw": self.raw, "meta": self.meta,
                           "reason": self.reason, "parked_at": self.parked_at, "token": self.token},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "ParkedMessage":
        data = json.loads(text)
        return cls(task_name=data["task_name"], queue=data["queue"], raw=data.get("raw"),
                   meta=data.get("meta") or {}, reason=data.get("reason") or "", parked_at=data.get("parked_at", 0.0),
                   token=data.get("token") or "")


class ParkingLot:
    """A sorted set per workspace (`key(ws, "parked")`) scored by release time."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def park(self, workspace_id: str, messages: list[ParkedMessage], release_at: float) -> None:
        if messages:
            self.redis.zadd(key(workspace_id, "parked"), {m.encode(): release_at for m in messages})

    def due(self, workspace_id: str, now: float, limit: int = RELEASE_CHUNK) -> list[tuple[str, ParkedMessage]]:
        """(member, message) pairs whose release time has come, earliest first; nothing is removed."""
        members = self.redis.zrangebyscore(key(workspace_id, "parked"), "-inf", now, start=0, num=limit)
        out = []
        for member in members:
            try:
                out.append((member, ParkedMessage.decode(member)))
            except (ValueError, KeyError, TypeError):
                out.append((member, None))  # type: ignore[arg-type]  # the caller dead-letters it
        return out

    def remove(self, workspace_id: str, member: str) -> bool:
        """True when this caller removed it (another releaser may have been first)."""
        return bool(self.redis.zrem(key(workspace_id, "parked"), member))

    def count(self, workspace_id: str) -> int:
        return self.redis.zcard(key(workspace_id, "parked"))

    def next_release(self, workspace_id: str) -> float | None:
        first = self.redis.zrange(key(workspace_id, "parked"), 0, 0, withscores=True)
        return first[0][1] if first else None


@dataclass(frozen=True)
class UsageReading:
    used: int
    limit: int
    at: float

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0


class UsageGauge:
    """The org's daily API usage last seen by any worker (`key(ws, "api_usage")`: used, limit, at)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def store(self, workspace_id: str, used: int, limit: int, at: float | None = None) -> None:
        self.redis.hset(key(workspace_id, "api_usage"),
                        mapping={"used": int(used), "limit": int(limit), "at": f"{at or time.time():.3f}"})

    def read(self, workspace_id: str) -> UsageReading | None:
        raw = self.redis.hgetall(key(workspace_id, "api_usage"))
        try:
            return UsageReading(int(raw["used"]), int(raw["limit"]), float(raw["at"]))
        except (KeyError, TypeError, ValueError):
            return None

    def over(self, workspace_id: str, ceiling: float) -> bool:
        reading = self.read(workspace_id)
        return reading is not None and reading.share >= ceiling

    def claim_recheck(self, workspace_id: str, every: float) -> bool:
        """True for at most one caller per `every` seconds: the `limits/` re-check costs an API call."""
        if every <= 0:
            return True
        return bool(self.redis.set(key(workspace_id, "api_usage", "recheck"), "1", nx=True, px=int(every * 1000)))

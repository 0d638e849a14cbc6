"""Parked work and the API-usage gauge: long waits are kept in Redis, not held as in-flight messages."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from events.keys import key
from events.lua import script
from schemas.api_usage import ApiUsage

#: parked messages taken per release run, so one release cannot flood the queues after a long stop
RELEASE_CHUNK = 1000


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
    """A sorted set per workspace (`key(ws, name)`) scored by release time.

    Two lots exist: "parked" (long waits: a spent quota, the governor, a lost session; released
    by beat once the org can take the work) and "retries" (a transient failure's backoff; every
    worker releases what is due each second). Neither holds a message in a worker's memory, so
    a worker that dies loses none and Redis's visibility timeout can stay short.
    """

    def __init__(self, client: redis.Redis, name: str = "parked"):
        self.redis = client
        self.name = name
        #: due members are leased (their score moved `lease` seconds ahead) by the releaser that
        #: takes them: a releaser that dies before removing them lets another take them after the lease
        self._claim = script(client, "parking_claim")
        self._due_now = script(client, "parking_due_now")

    def _key(self, workspace_id: str) -> str:
        return key(workspace_id, self.name)

    @property
    def index(self) -> str:
        """The set of workspaces that have had entries in this lot (releasers look here)."""
        return f"sfsync:{self.name}:workspaces"

    def park(self, workspace_id: str, messages: list[ParkedMessage], release_at: float) -> None:
        if messages:
            self.redis.zadd(self._key(workspace_id), {m.encode(): release_at for m in messages})
            self.redis.sadd(self.index, workspace_id)

    def workspaces(self) -> list[str]:
        return sorted(m.decode() if isinstance(m, bytes) else m for m in self.redis.smembers(self.index))

    def due_workspaces(self, now: float) -> list[str]:
        """Workspaces with an entry due at `now`, in one round trip (the index only shrinks when a
        workspace is removed, so a park racing a release can never leave its entry unseen)."""
        names = self.workspaces()
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for ws in names:
            pipe.zrangebyscore(self._key(ws), "-inf", now, start=0, num=1)
        return [ws for ws, answer in zip(names, pipe.execute()) if answer]

    def due(self, workspace_id: str, now: float, limit: int = RELEASE_CHUNK) -> list[tuple[str, ParkedMessage | None]]:
        """(member, message) pairs whose release time has come, earliest first; nothing is removed.

        The message is None for a member that cannot be decoded (the caller dead-letters it)."""
        members = self.redis.zrangebyscore(self._key(workspace_id), "-inf", now, start=0, num=limit)
        return [(member, _decoded(member)) for member in members]

    def claim_due(self, workspace_id: str, now: float, lease: float,
                  limit: int = RELEASE_CHUNK) -> list[tuple[str, ParkedMessage | None]]:
        """Like `due`, but each member is leased to this caller (concurrent releasers take each once)."""
        members = self._claim(keys=[self._key(workspace_id)], args=[now, now + lease, limit])
        return [(member, _decoded(member)) for member in members]

    def make_due(self, workspace_id: str, now: float) -> int:
        """Every entry of the workspace due at `now` (what parked them has ended); returns how many moved."""
        return int(self._due_now(keys=[self._key(workspace_id)], args=[now]))

    def remove(self, workspace_id: str, member: str) -> bool:
        """True when this caller removed it (another releaser may have been first)."""
        return bool(self.redis.zrem(self._key(workspace_id), member))

    def count(self, workspace_id: str) -> int:
        held: int = self.redis.zcard(self._key(workspace_id))
        return held


def _decoded(member: str) -> ParkedMessage | None:
    try:
        return ParkedMessage.decode(member)
    except (ValueError, KeyError, TypeError):
        return None  # the caller dead-letters it


class UsageGauge:
    """The org's daily API usage last seen by any worker (`key(ws, "api_usage")`: used, limit, at)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def store(self, workspace_id: str, used: int, limit: int, at: float | None = None) -> None:
        self.redis.hset(key(workspace_id, "api_usage"),
                        mapping={"used": int(used), "limit": int(limit), "at": f"{at or time.time():.3f}"})

    def read(self, workspace_id: str) -> ApiUsage | None:
        raw = self.redis.hgetall(key(workspace_id, "api_usage"))
        try:
            return ApiUsage(int(raw["used"]), int(raw["limit"]), float(raw["at"]))
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

"""The audit log: who did what, when, on which workspace and dead letters (Redis streams `sfsync:audit*`).

What signed-in users and sfsync itself do goes to `sfsync:audit`. What anyone can cause without
signing in (failed and refused sign-ins) goes to a stream of its own, rate-limited and shorter, so a
flood of it can neither fill Redis nor trim the real history; the console shows both together.
Every field is capped: a request can put at most a few hundred characters into an entry.
"""

from __future__ import annotations

import heapq
import time
from datetime import datetime, timezone

import redis

STREAM = "sfsync:audit"
#: entries anyone can cause without signing in
ANONYMOUS_STREAM = "sfsync:audit:anonymous"
#: entries kept (approximately): older ones are trimmed as new ones arrive
KEEP = 50_000
ANONYMOUS_KEEP = 10_000
#: anonymous entries recorded per minute at most; past it, one entry says so and the rest are not recorded
ANONYMOUS_PER_MINUTE = 30
#: dead-letter ids written out in one entry; a larger replay or purge records the count and the first ones
IDS_KEPT = 200
#: characters kept of each field (a longer value is cut and says how long it was)
FIELD_LIMITS = {"user": 200, "role": 20, "action": 64, "workspace": 100, "ip": 64, "detail": 1000}
#: every action recorded, in the order the console's Audit page offers them as filters
ACTIONS = ("sign_in", "sign_in_failed", "sign_in_refused", "sign_out", "replay", "replay_finished", "purge",
           "mappings_saved", "mappings_rollback", "connect_started", "connect_refused", "connect_failed", "connected",
           "disconnected", "enabled", "disabled", "removed", "logins_resumed", "registry_entry_refused",
           "registry_entry_resealed", "audit_suppressed")


def capped(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, saying how long it was when it is cut."""
    value = str(value)
    if len(value) <= limit:
        return value
    note = f"... ({len(value):,} characters)"
    return value[:max(limit - len(note), 0)] + note


class AuditLog:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def record(self, *, user: str, role: str, action: str, ip: str = "", workspace: str = "",
               ids: list[str] | tuple[str, ...] = (), detail: str = "", anonymous: bool = False) -> None:
        """Add an entry; `anonymous` for what a request without a session caused (rate-limited, kept apart)."""
        ids = list(ids)
        fields = {"user": user, "role": role, "action": action, "workspace": workspace, "ip": ip, "detail": detail}
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 **{name: capped(value, FIELD_LIMITS[name]) for name, value in fields.items()},
                 "count": str(len(ids)),
                 "ids": " ".join(i[:64] for i in ids[:IDS_KEPT]) + (" ..." if len(ids) > IDS_KEPT else "")}
        if not anonymous:
            self.redis.xadd(STREAM, entry, maxlen=KEEP, approximate=True)
            return
        minute = int(time.time() // 60)
        bucket = f"{ANONYMOUS_STREAM}:minute:{minute}"
        pipe = self.redis.pipeline()
        pipe.incr(bucket)
        pipe.expire(bucket, 120)
        seen = int(pipe.execute()[0])
        if seen > ANONYMOUS_PER_MINUTE + 1:
            return
        if seen == ANONYMOUS_PER_MINUTE + 1:
            entry = {**entry, "action": "audit_suppressed", "user": "", "ip": "",
                     "detail": f"more than {ANONYMOUS_PER_MINUTE} sign-in failures this minute: the rest of this "
                               "minute's are not recorded (the sign-in throttle still counts them)"}
        self.redis.xadd(ANONYMOUS_STREAM, entry, maxlen=ANONYMOUS_KEEP, approximate=True)

    def actions(self, look_back: int = 2000) -> list[str]:
        """Actions to filter by: every known one, and any other among the newest entries (an older or newer
        console may record actions this one does not know)."""
        seen = {fields.get("action", "") for stream in (STREAM, ANONYMOUS_STREAM)
                for _, fields in self.redis.xrevrange(stream, count=look_back)}
        return [*ACTIONS, *sorted(a for a in seen if a and a not in ACTIONS)]

    def recent(self, count: int = 200, action: str | None = None) -> list[dict[str, str]]:
        """The newest entries of both streams first (those of one action when given)."""
        span = count if action is None else KEEP
        rows = heapq.merge(self.redis.xrevrange(STREAM, count=span),
                           self.redis.xrevrange(ANONYMOUS_STREAM, count=min(span, ANONYMOUS_KEEP)),
                           key=lambda row: _order(row[0]), reverse=True)
        entries = (fields for _, fields in rows if action is None or fields.get("action") == action)
        return [e for _, e in zip(range(count), entries)]


def _order(stream_id: str | bytes) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    millis, _, serial = text.partition("-")
    return int(millis), int(serial or 0)

"""The console's audit log: who did what, when, on which workspace and dead letters (Redis stream `sfsync:audit`)."""

from __future__ import annotations

from datetime import datetime, timezone

import redis

STREAM = "sfsync:audit"
#: entries kept (approximately): older ones are trimmed as new ones arrive
KEEP = 50_000
#: dead-letter ids written out in one entry; a larger replay or purge records the count and the first ones
IDS_KEPT = 200


class AuditLog:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def record(self, *, user: str, role: str, action: str, ip: str = "", workspace: str = "",
               ids: list[str] | tuple[str, ...] = (), detail: str = "") -> None:
        ids = list(ids)
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "user": user, "role": role,
                 "action": action, "workspace": workspace, "ip": ip, "count": str(len(ids)),
                 "ids": " ".join(ids[:IDS_KEPT]) + (" ..." if len(ids) > IDS_KEPT else ""), "detail": detail[:1000]}
        self.redis.xadd(STREAM, entry, maxlen=KEEP, approximate=True)

    def recent(self, count: int = 200, action: str | None = None) -> list[dict[str, str]]:
        """The newest entries first (those of one action when given)."""
        rows = self.redis.xrevrange(STREAM, count=count if action is None else KEEP)
        entries = [fields for _, fields in rows if action is None or fields.get("action") == action]
        return entries[:count]

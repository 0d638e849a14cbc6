"""The console's audit log: who did what, when, on which workspace and dead letters (Redis stream `sfsync:audit`)."""

from __future__ import annotations

from datetime import datetime, timezone

import redis

STREAM = "sfsync:audit"
#: entries kept (approximately): older ones are trimmed as new ones arrive
KEEP = 50_000
#: dead-letter ids written out in one entry; a larger replay or purge records the count and the first ones
IDS_KEPT = 200
#: every action the console records, in the order the Audit page's filter offers them
ACTIONS = ("sign_in", "sign_in_failed", "sign_in_refused", "sign_out", "replay", "replay_finished", "purge",
           "mappings_saved", "mappings_rollback", "connect_started", "connect_refused", "connect_failed", "connected",
           "disconnected", "enabled", "disabled", "removed")


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

    def actions(self, look_back: int = 2000) -> list[str]:
        """Actions to filter by: every known one, and any other among the newest entries (an older or newer
        console may record actions this one does not know)."""
        seen = {fields.get("action", "") for _, fields in self.redis.xrevrange(STREAM, count=look_back)}
        return [*ACTIONS, *sorted(a for a in seen if a and a not in ACTIONS)]

    def recent(self, count: int = 200, action: str | None = None) -> list[dict[str, str]]:
        """The newest entries first (those of one action when given)."""
        rows = self.redis.xrevrange(STREAM, count=count if action is None else KEEP)
        entries = [fields for _, fields in rows if action is None or fields.get("action") == action]
        return entries[:count]

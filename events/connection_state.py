"""Whether the org can be reached with the credentials held, as the workers last found it (shared in Redis)."""

from __future__ import annotations

import time

import redis

from events.keys import key


class ConnectionState:
    """`key(ws, "salesforce")`: state (connected | disconnected), code, reason, since — for status and /readyz."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def mark_lost(self, workspace_id: str, code: str, reason: str) -> None:
        name = key(workspace_id, "salesforce")
        if self.redis.hget(name, "state") != "disconnected":
            self.redis.hset(name, mapping={"since": f"{time.time():.3f}"})
        self.redis.hset(name, mapping={"state": "disconnected", "code": code, "reason": reason[:500]})

    def mark_connected(self, workspace_id: str) -> None:
        self.redis.hset(key(workspace_id, "salesforce"),
                        mapping={"state": "connected", "code": "", "reason": "", "since": f"{time.time():.3f}"})

    def read(self, workspace_id: str) -> dict[str, str] | None:
        return self.redis.hgetall(key(workspace_id, "salesforce")) or None

    def read_many(self, workspace_ids: list[str]) -> dict[str, dict[str, str] | None]:
        """The state of each workspace, read in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for workspace_id in workspace_ids:
            pipe.hgetall(key(workspace_id, "salesforce"))
        return {ws: (state or None) for ws, state in zip(workspace_ids, pipe.execute())}

    def lost_reason(self, workspace_id: str) -> str | None:
        """A one-line reason when the org is disconnected, else None."""
        state = self.read(workspace_id)
        if not state or state.get("state") != "disconnected":
            return None
        since = float(state.get("since") or time.time())
        return (f"salesforce disconnected for {time.time() - since:.0f}s: {state.get('code')}: "
                f"{state.get('reason')}")

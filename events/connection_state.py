"""Whether the org can be reached with the credentials held, as the workers last found it (shared in Redis)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis

from events.keys import key

#: what a login gate's decision returns besides the fields to write (a yes/no, or nothing)
_Verdict = TypeVar("_Verdict")

#: the login gate's fields (see workers/login_gate.py): refused logins with the credentials whose
#: fingerprint is kept, when the last was refused, and until when one process holds the try that is due
LOGIN_FIELDS = ("login_refused", "login_refused_at", "login_fingerprint", "login_claim_until")


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

    # --- the login gate ------------------------------------------------------------------
    def change_login(self, workspace_id: str,
                     decide: Callable[[dict[str, str]], tuple[_Verdict, dict[str, str | None]]]
                     ) -> tuple[_Verdict, dict[str, str]]:
        """Apply `decide` to the workspace's state atomically: it gets the fields and returns (its verdict, the
        fields to write: a value sets one, None deletes it); returns (the verdict, the fields it saw)."""
        name = key(workspace_id, "salesforce")
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(name)
                    fields = pipe.hgetall(name)
                    verdict, changes = decide(fields)
                    if not changes:
                        pipe.unwatch()
                        return verdict, fields
                    pipe.multi()
                    dropped = [f for f, v in changes.items() if v is None]
                    kept = {f: v for f, v in changes.items() if v is not None}
                    if dropped:
                        pipe.hdel(name, *dropped)
                    if kept:
                        pipe.hset(name, mapping=kept)
                    pipe.execute()
                    return verdict, fields
                except redis.WatchError:
                    continue

    def release_login(self, workspace_id: str) -> None:
        """The try made was neither refused nor accepted (the org did not answer): another may come."""
        self.redis.hdel(key(workspace_id, "salesforce"), "login_claim_until")

    def login_worked(self, workspace_id: str) -> None:
        """A login worked: what was refused is forgotten."""
        self.redis.hdel(key(workspace_id, "salesforce"), *LOGIN_FIELDS)

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

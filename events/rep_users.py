"""Rep email -> Salesforce User id of a workspace's org, shared by every worker process.

A Task's owner is the rep who sent the email, found by the rep's email among the org's active
users. Each pool process kept its own answers, so every process of every worker asked the org
again for the same reps; here the answer is asked once per workspace and kept for an hour (a rep
who joins the org later is found after that).
"""

from __future__ import annotations

import json
import time

import redis

from events.keys import key

#: seconds an answer (a user id, or "no such user") is trusted
TTL = 3600.0


class RepUsers:
    def __init__(self, client: redis.Redis, ttl: float = TTL):
        self.redis = client
        self.ttl = ttl

    @staticmethod
    def _key(ws: str) -> str:
        return key(ws, "rep_users")

    def get_many(self, ws: str, emails: list[str], now: float | None = None) -> dict[str, tuple[str | None, float]]:
        """Fresh answers only: email -> (user id or None, when it was asked)."""
        if not emails:
            return {}
        now = time.time() if now is None else now
        found: dict[str, tuple[str | None, float]] = {}
        for email, raw in zip(emails, self.redis.hmget(self._key(ws), emails)):
            try:
                user_id, at = json.loads(raw) if raw else (None, None)
            except (ValueError, TypeError):  # not ours: ask the org again
                continue
            if isinstance(at, (int, float)) and now - at <= self.ttl and (user_id is None or isinstance(user_id, str)):
                found[email] = (user_id, float(at))
        return found

    def put_many(self, ws: str, answers: dict[str, tuple[str | None, float]]) -> None:
        if not answers:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self._key(ws), mapping={email: json.dumps([user_id, at]) for email, (user_id, at) in answers.items()})
        pipe.expire(self._key(ws), int(2 * self.ttl))  # reps no longer seen leave with the key
        pipe.execute()

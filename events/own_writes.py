"""The Contact writes sfsync made itself, as exact (Id, SystemModstamp) pairs, so the CRM cycle does not echo them.

The sync engine records the pair of every Contact it created or updated (read back right after
the write: collection write responses carry no SystemModstamp); the CRM cycle treats a changed
row as sfsync's own only when its pair is recorded. Who was signed in does not matter: a person
editing as the integration user makes a new SystemModstamp that sfsync never recorded.

Redis, per workspace: sorted set `sfsync:{<ws>}:crm:own` of `<15-char Id>:<stamp ms>`, scored
by the stamp; string `sfsync:{<ws>}:crm:handled_from` = the stamp below which every change was
already read by a CRM cycle (the floor the cycle last pruned at).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from events.changes import change_key, handled_set
from events.keys import key

#: seconds a recorded write is kept at most; the CRM cycle drops pairs sooner, once read past them
OWN_WRITE_RETENTION = 24 * 3600

Pair = tuple[str, int]


def own_member(contact_id: str, modstamp_ms: int) -> str:
    # 15- and 18-character forms of one Id share their first 15 characters (case-sensitive)
    return f"{contact_id[:15]}:{modstamp_ms}"


class OwnWrites:
    """Record sfsync's Contact writes, and answer whether a changed row is one of them."""

    def __init__(self, client: redis.Redis, retention: float = OWN_WRITE_RETENTION):
        self.redis = client
        self.retention_ms = int(retention * 1000)

    def _own(self, ws: str) -> str:
        return key(ws, "crm", "own")

    def _handled_from(self, ws: str) -> str:
        return key(ws, "crm", "handled_from")

    def record(self, ws: str, pairs: Iterable[Pair], *, now_ms: int) -> None:
        """Remember sfsync wrote these (Id, SystemModstamp); drop pairs older than the retention."""
        members = {own_member(cid, ms): ms for cid, ms in pairs}
        if not members:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self._own(ws), members)
        # bounds the set when no CRM cycle runs to prune it (stamps are Salesforce's clock, close to ours)
        pipe.zremrangebyscore(self._own(ws), "-inf", f"({now_ms - self.retention_ms}")
        pipe.execute()

    def recorded(self, ws: str, pairs: Sequence[Pair]) -> list[bool]:
        """Per pair, in order: did sfsync record it as its own write?"""
        if not pairs:
            return []
        scores = self.redis.zmscore(self._own(ws), [own_member(cid, ms) for cid, ms in pairs])
        return [score is not None for score in scores]

    def accounted_for(self, ws: str, pairs: Sequence[Pair]) -> list[bool]:
        """Per (Id, SystemModstamp) a Contact had just before sfsync wrote it: was that state already
        dealt with — sfsync's own write, or a change the CRM cycle has read (handled, or older than
        its floor)? If not, a person changed the contact since the last cycle, and sfsync's write
        must not be recorded as its own: the cycle would then see only sfsync's stamp and hide the edit.
        """
        if not pairs:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._handled_from(ws))
        pipe.zmscore(self._own(ws), [own_member(cid, ms) for cid, ms in pairs])
        pipe.zmscore(handled_set(ws), [change_key(cid, ms) for cid, ms in pairs])
        floor, own, handled = pipe.execute()
        floor_ms = int(floor) if floor is not None else None
        return [o is not None or h is not None or (floor_ms is not None and ms < floor_ms)
                for (_, ms), o, h in zip(pairs, own, handled)]

    def forget_before(self, ws: str, floor_ms: int) -> None:
        """The CRM cycle will never read a change stamped before `floor_ms` again: drop those pairs."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self._own(ws), "-inf", f"({floor_ms}")
        pipe.set(self._handled_from(ws), floor_ms)
        pipe.execute()

"""The idempotency ledger: which events already reached Salesforce, keyed by workspace and event id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from events.keys import key
from events.lua import script

#: seconds a ledger entry is kept; far longer than any redelivery, retry or replay window
LEDGER_TTL = 90 * 24 * 3600
#: seconds a "pending" mark lives: a write attempt that never finished (worker died mid-write)
PENDING_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class LedgerEntry:
    sobject: str
    record_id: str
    contact_id: str | None = None

    def encode(self) -> str:
        return f"{self.sobject}:{self.record_id}:{self.contact_id or ''}"

    @classmethod
    def decode(cls, raw: str) -> "LedgerEntry":
        sobject, record_id, contact_id = (raw.split(":") + ["", ""])[:3]
        return cls(sobject, record_id, contact_id or None)


class Ledger:
    """One Redis string per written event (so each entry expires on its own)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def _done(self, workspace_id: str, event_id: str) -> str:
        return key(workspace_id, "ledger", event_id)

    def _pending(self, workspace_id: str, event_id: str) -> str:
        return key(workspace_id, "pending", event_id)

    def lookup(self, workspace_id: str, event_ids: list[str]) -> dict[str, LedgerEntry]:
        """Entries of the events already written."""
        if not event_ids:
            return {}
        values = self.redis.mget([self._done(workspace_id, e) for e in event_ids])
        return {e: LedgerEntry.decode(v) for e, v in zip(event_ids, values) if v}

    def pending(self, workspace_id: str, event_ids: list[str]) -> set[str]:
        """Events whose write was started by some delivery that never recorded its end."""
        if not event_ids:
            return set()
        values = self.redis.mget([self._pending(workspace_id, e) for e in event_ids])
        return {e for e, v in zip(event_ids, values) if v}

    def begin(self, workspace_id: str, event_ids: Iterable[str]) -> None:
        """Mark the events as being written (a write that never ends leaves the mark): one script call
        for the batch."""
        ids = list(event_ids)
        if ids:
            script(self.redis, "ledger_begin")(keys=[self._pending(workspace_id, e) for e in ids], args=[PENDING_TTL])

    def record(self, workspace_id: str, entries: dict[str, LedgerEntry]) -> None:
        self.finish(workspace_id, entries, ())

    def finish(self, workspace_id: str, entries: dict[str, LedgerEntry], abandoned: Iterable[str]) -> None:
        """A batch's writes in one round trip: the entries of the events written, and the "pending"
        marks of those and of the `abandoned` ones (Salesforce refused them: nothing was written) cleared."""
        refused = list(abandoned)
        if not entries and not refused:
            return
        written = list(entries.items())
        keys = [self._done(workspace_id, e) for e, _ in written]
        keys += [self._pending(workspace_id, e) for e in [*(e for e, _ in written), *refused]]
        script(self.redis, "ledger_finish")(keys=keys, args=[LEDGER_TTL, *(entry.encode() for _, entry in written)])

    def abandon(self, workspace_id: str, event_ids: Iterable[str]) -> None:
        """The write certainly did not happen (Salesforce answered with an error): clear the mark."""
        ids = list(event_ids)
        if ids:
            self.redis.delete(*[self._pending(workspace_id, e) for e in ids])

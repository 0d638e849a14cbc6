"""What sync_batch needs of the gateway and of the stores, as Protocols.

A worker passes the Redis stores (events.ledger, events.contact_index, events.own_writes,
events.rep_users) and the Salesforce gateway; unit tests pass in-memory fakes
(tests/unit/fakes.py). Only the methods sync_batch calls are named here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from events.ledger import LedgerEntry
from schemas.api_usage import ApiUsage
from workers.salesforce.gateway import RecordResult

Pair = tuple[str, int]


class Gateway(Protocol):
    """The Salesforce calls sync_batch makes (workers.salesforce.gateway.SalesforceGateway)."""

    usage: ApiUsage | None

    def query_in(self, template: str, values: Iterable[str], **params: Any) -> list[dict[str, Any]]: ...

    def query_in_together(self, queries: Sequence[tuple[str, Iterable[str]]]
                          ) -> list[list[dict[str, Any]] | None]: ...

    def create(self, records: Sequence[tuple[str, dict[str, Any]]],
               all_or_none: bool = False) -> list[RecordResult]: ...

    def update(self, records: Sequence[tuple[str, str, dict[str, Any]]],
               all_or_none: bool = False) -> list[RecordResult]: ...

    def fields(self, sobject: str) -> dict[str, dict[str, Any]]: ...

    def is_createable(self, sobject: str) -> bool: ...


class LedgerStore(Protocol):
    """Which events were written, and which began writing (events.ledger.Ledger)."""

    def lookup(self, workspace_id: str, event_ids: list[str]) -> dict[str, LedgerEntry]: ...

    def begin(self, workspace_id: str, event_ids: Iterable[str]) -> None: ...

    def pending(self, workspace_id: str, event_ids: list[str]) -> set[str]: ...

    def record(self, workspace_id: str, entries: dict[str, LedgerEntry]) -> None: ...

    def finish(self, workspace_id: str, entries: dict[str, LedgerEntry], abandoned: Iterable[str]) -> None:
        """A batch's written entries recorded, and the marks of those and of `abandoned` cleared."""

    def abandon(self, workspace_id: str, event_ids: Iterable[str]) -> None: ...


class PeopleIndex(Protocol):
    """Address -> Contact (or Lead) candidates, and addresses known to match nobody (events.contact_index)."""

    def get_many(self, ws: str, addresses: list[str]) -> dict[str, list[dict[str, Any]]]: ...

    def put_contacts(self, ws: str, contacts: Iterable[dict[str, Any]], email_fields: list[str], *,
                     misses: Iterable[str] = ()) -> None: ...

    def put_misses(self, ws: str, addresses: Iterable[str]) -> None: ...

    def remove_contact(self, ws: str, contact_id: str) -> None: ...


class Locks(Protocol):
    """One creator of a person across workers (events.contact_index.CreationLocks)."""

    def acquire(self, ws: str, addresses: list[str], token: str) -> bool: ...

    def release(self, ws: str, addresses: list[str], token: str) -> None: ...


class OwnWriteLog(Protocol):
    """sfsync's own Contact writes, so the CRM cycle does not echo them (events.own_writes.OwnWrites)."""

    def accounted_for(self, ws: str, pairs: Sequence[Pair]) -> list[bool]: ...

    def record(self, ws: str, pairs: Iterable[Pair], *, now_ms: int) -> None: ...


class RepUserCache(Protocol):
    """Rep email -> Salesforce User id, shared by the workers (events.rep_users.RepUsers)."""

    def get_many(self, ws: str, emails: list[str], now: float | None = None
                 ) -> dict[str, tuple[str | None, float]]: ...

    def put_many(self, ws: str, answers: dict[str, tuple[str | None, float]]) -> None: ...


class LateReleases(Protocol):
    """Where emails wait for their person to appear in Salesforce (events.late_contacts.LateContacts)."""

    def release(self, ws: str, addresses: Iterable[str], *, days: float) -> list[str]:
        """Send the emails waiting for any of these addresses to be written now; their event ids."""

"""In-memory stand-ins for the gateway and the stores sync_batch takes (workers/sync/stores.py), for unit tests.

They keep what they are given in dicts and answer the same questions the Redis stores and the Salesforce
gateway answer; integration tests use the real ones (Redis, the emulator over HTTP).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from typing import Any

from events.ledger import LedgerEntry
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import RecordResult
from workers.sync.resolve import index_entries

_PREFIX = {"Contact": "003", "Lead": "00Q", "Task": "00T", "EmailMessage": "02s", "EmailMessageRelation": "0EM"}
_FROM = re.compile(r"\bFROM\s+(\w+)", re.I)
_IN = re.compile(r"(\w+)\s+IN\s+\{values\}", re.I)

#: fields every object of the fake org has (Unify_Event_Id__c included: writes are idempotent)
FIELDS = ("Id", "Email", "FirstName", "LastName", "Title", "Company", "Subject", "Description", "WhoId", "OwnerId",
          "Status", "ActivityDate", "Priority", "TaskSubtype", "Type", "MessageIdentifier", "Unify_Event_Id__c",
          "TextBody", "HtmlBody", "FromAddress", "FromName", "ToAddress", "ToIds", "Incoming", "MessageDate",
          "ThreadIdentifier", "ParentId", "RelationId", "RelationAddress", "RelationType", "EmailMessageId",
          "IsConverted", "ConvertedContactId", "LeadSource", "MailingCountry", "Country", "CreatedDate",
          "SystemModstamp", "IsActive")


class FakeGateway:
    """An org in memory: records by object; queries match `<Field> IN {values}` clauses case-insensitively.

    `refuse(sobject, fields)` may return the SalesforceError a create is answered with; `fail_queries` makes
    every query raise it (a call shared by the whole batch failing).
    """

    def __init__(self, *, enhanced_email: bool = False,
                 refuse: Callable[[str, dict[str, Any]], SalesforceError | None] | None = None):
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.enhanced_email = enhanced_email
        self.refuse = refuse
        self.fail_queries: SalesforceError | None = None
        self.usage = None
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1)

    def add(self, sobject: str, **fields: Any) -> dict[str, Any]:
        record = {"Id": self._new_id(sobject), "CreatedDate": "2026-01-01T00:00:00.000+0000",
                  "SystemModstamp": _stamp(next(self._ids)), **fields}
        self.records.setdefault(sobject, {})[record["Id"]] = record
        return record

    def _new_id(self, sobject: str) -> str:
        return f"{_PREFIX.get(sobject, '001')}{next(self._ids):015d}"

    def query_in(self, template: str, values: Iterable[str], **params: Any) -> list[dict[str, Any]]:
        sobject = _FROM.search(template).group(1)
        self.calls.append(("query", sobject))
        if self.fail_queries is not None:
            raise self.fail_queries
        wanted = {str(v).lower() for v in values if v}
        fields = _IN.findall(template)
        return [dict(r) for r in self.records.get(sobject, {}).values()
                if any(str(r.get(f) or "").lower() in wanted for f in fields)]

    def query_in_together(self, queries):
        return [self.query_in(template, values) for template, values in queries]

    def create(self, records, all_or_none: bool = False) -> list[RecordResult]:
        results = []
        for sobject, fields in records:
            self.calls.append(("create", sobject))
            error = self.refuse(sobject, fields) if self.refuse else None
            if error is not None:
                results.append(RecordResult(False, errors=(error,)))
                continue
            record = self.add(sobject, **fields)
            results.append(RecordResult(True, id=record["Id"], created=True))
        return results

    def update(self, records, all_or_none: bool = False) -> list[RecordResult]:
        results = []
        for sobject, record_id, fields in records:
            self.calls.append(("update", sobject))
            held = self.records.get(sobject, {}).get(record_id)
            if held is None:
                results.append(RecordResult(False, errors=(SalesforceError("ENTITY_IS_DELETED", "deleted"),)))
                continue
            held.update(fields, SystemModstamp=_stamp(next(self._ids)))
            results.append(RecordResult(True, id=record_id))
        return results

    def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        return {name: {"name": name, "type": "string", "length": 32000, "createable": True, "updateable": True,
                       "nillable": True} for name in FIELDS}

    def is_createable(self, sobject: str) -> bool:
        return sobject != "EmailMessage" or self.enhanced_email

    def of(self, sobject: str) -> list[dict[str, Any]]:
        return list(self.records.get(sobject, {}).values())


def _stamp(n: int) -> str:
    return f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000+0000"


class FakeLedger:
    def __init__(self):
        self.done: dict[tuple[str, str], LedgerEntry] = {}
        self.started: set[tuple[str, str]] = set()

    def lookup(self, workspace_id, event_ids):
        return {e: self.done[(workspace_id, e)] for e in event_ids if (workspace_id, e) in self.done}

    def begin(self, workspace_id, event_ids):
        self.started |= {(workspace_id, e) for e in event_ids}

    def pending(self, workspace_id, event_ids):
        return {e for e in event_ids if (workspace_id, e) in self.started}

    def record(self, workspace_id, entries):
        for event_id, entry in entries.items():
            self.done[(workspace_id, event_id)] = entry
            self.started.discard((workspace_id, event_id))

    def abandon(self, workspace_id, event_ids):
        self.started -= {(workspace_id, e) for e in event_ids}

    def finish(self, workspace_id, entries, abandoned):
        self.record(workspace_id, entries)
        self.abandon(workspace_id, abandoned)


class FakeIndex:
    def __init__(self):
        self.by_address: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def get_many(self, ws, addresses):
        return {a: list(self.by_address[(ws, a)]) for a in addresses if (ws, a) in self.by_address}

    def put_contacts(self, ws, contacts, email_fields, *, misses=()):
        self.put_misses(ws, misses)
        for contact in contacts:
            for address in index_entries(contact, email_fields):
                held = [c for c in self.by_address.get((ws, address), []) if c["Id"] != contact["Id"]]
                self.by_address[(ws, address)] = [*held, dict(contact)]

    def put_misses(self, ws, addresses):
        for address in addresses:
            self.by_address.setdefault((ws, address), [])

    def remove_contact(self, ws, contact_id):
        for k, held in self.by_address.items():
            self.by_address[k] = [c for c in held if c["Id"] != contact_id]


class FakeLocks:
    def __init__(self, held_by_others: Iterable[str] = ()):
        self.held = {a: "someone-else" for a in held_by_others}

    def acquire(self, ws, addresses, token):
        if any(self.held.get(a) not in (None, token) for a in addresses):
            return False
        self.held.update(dict.fromkeys(addresses, token))
        return True

    def release(self, ws, addresses, token):
        for a in addresses:
            if self.held.get(a) == token:
                del self.held[a]


class FakeOwnWrites:
    def __init__(self):
        self.recorded: list[tuple[str, int]] = []

    def accounted_for(self, ws, pairs):
        return [True for _ in pairs]

    def record(self, ws, pairs, *, now_ms):
        self.recorded.extend(pairs)


class FakeUsers:
    def __init__(self):
        self.answers: dict[str, tuple[str | None, float]] = {}

    def get_many(self, ws, emails, now=None):
        return {e: self.answers[e] for e in emails if e in self.answers}

    def put_many(self, ws, answers):
        self.answers.update(answers)

"""Events sfsync sends to Unify (`salesforce.contact.changed`, for Contacts and Leads): their JSON shape, and publishing each once.

The wire format is documented in docs/crm-sync.md; this module is its single source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from events.changes import change_key, handled_set
from events.lua import script
from events.topology import OUTBOUND_QUEUE

CONTACT_CHANGED = "salesforce.contact.changed"
VERSION = 1


def iso_millis(ms: int) -> str:
    """`2026-11-26T18:03:00.412Z`: UTC with milliseconds, the contract's timestamp form."""
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def event_id(contact_id: str, modstamp_ms: int, *, prefix: str = "sfc") -> str:
    # derived, not random: a change read twice (overlap window, a retried cycle) has one id,
    # so Unify can dedupe too should a copy ever get through
    return f"{prefix}_{contact_id}_{modstamp_ms}"


def contact_addresses(record: dict[str, Any], email_fields: Sequence[str]) -> list[str]:
    """Every address of the contact, Email first then the alternates, lower-cased, without repeats."""
    out: list[str] = []
    for name in email_fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            address = value.strip().lower()
            if address not in out:
                out.append(address)
    return out


def contact_changed_event(workspace_id: str, record: dict[str, Any], *, modstamp_ms: int,
                          email_fields: Sequence[str], mapped_fields: Sequence[str]) -> dict[str, Any]:
    """The `salesforce.contact.changed` event for one Contact row as Salesforce returned it."""
    contact_id = record["Id"]
    return {
        "id": event_id(contact_id, modstamp_ms),
        "type": CONTACT_CHANGED,
        "version": VERSION,
        "object": "Contact",
        "workspace_id": workspace_id,
        "occurred_at": iso_millis(modstamp_ms),
        "data": {
            "contact_id": contact_id,
            "emails": contact_addresses(record, email_fields),
            # the current Salesforce values of every mapped field (state, not a diff): a consumer
            # that missed or reordered an event still ends up with what Salesforce holds
            "fields": {name: record.get(name) for name in mapped_fields},
            "system_modstamp": iso_millis(modstamp_ms),
            "deleted": bool(record.get("IsDeleted")),
        },
    }


def lead_changed_event(workspace_id: str, record: dict[str, Any], *, modstamp_ms: int,
                       email_fields: Sequence[str], mapped_fields: Sequence[str]) -> dict[str, Any]:
    """The same event for one Lead row: `"object": "Lead"`, `data.lead_id`, and whether it was converted
    (then `data.converted_contact_id` is the Contact it became, which Unify follows from then on)."""
    lead_id = record["Id"]
    return {
        "id": event_id(lead_id, modstamp_ms, prefix="sfl"),
        "type": CONTACT_CHANGED,
        "version": VERSION,
        "object": "Lead",
        "workspace_id": workspace_id,
        "occurred_at": iso_millis(modstamp_ms),
        "data": {
            "lead_id": lead_id,
            "emails": contact_addresses(record, email_fields),
            "fields": {name: record.get(name) for name in mapped_fields},
            "converted": bool(record.get("IsConverted")),
            "converted_contact_id": record.get("ConvertedContactId"),
            "system_modstamp": iso_millis(modstamp_ms),
            "deleted": bool(record.get("IsDeleted")),
        },
    }


@dataclass(frozen=True)
class HandledChange:
    """One (Id, SystemModstamp) the CRM cycle dealt with; `event` is None when nothing is sent for it."""

    contact_id: str
    modstamp_ms: int
    event: dict[str, Any] | None

    @property
    def key(self) -> str:
        return change_key(self.contact_id, self.modstamp_ms)


class OutboundQueue:
    """The `unify.outbound` Redis list (LPUSH here, BRPOP by Unify) and the record of what was handled.

    Marking a change handled and pushing its event happen in one Lua script, so a crash can
    neither push an event twice nor mark a change whose event never went out.
    """

    def __init__(self, client: redis.Redis, queue: str = OUTBOUND_QUEUE):
        self.redis = client
        self.queue = queue
        self._script = script(client, "outbound_publish_once")

    def _handled(self, ws: str) -> str:
        return handled_set(ws)

    def publish_once(self, ws: str, changes: Iterable[HandledChange]) -> list[bool]:
        """Per change, in order: True when it was new (and its event, if any, was pushed)."""
        changes = list(changes)
        if not changes:
            return []
        args: list[str | int] = []
        for change in changes:
            payload = json.dumps(change.event, separators=(",", ":")) if change.event is not None else ""
            args.extend((change.key, change.modstamp_ms, payload))
        flags = self._script(keys=[self._handled(ws), self.queue], args=args)
        return [bool(f) for f in flags]

    def forget_before(self, ws: str, modstamp_ms: int) -> int:
        """Drop records of changes older than `modstamp_ms`: no later query can return them again."""
        dropped: int = self.redis.zremrangebyscore(self._handled(ws), "-inf", f"({modstamp_ms}")
        return dropped

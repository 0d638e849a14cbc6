"""sync_batch: the domain entry point that turns a batch of events into Salesforce writes and outcomes.

It takes plain data and a gateway and knows nothing of Celery: the task shell, the replay
command and the tests all call it the same way.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from events.contact_index import ContactIndex, CreationLocks
from events.ledger import Ledger, LedgerEntry
from schemas.events import ContactUpdated, EmailReplied, EmailSent, Event, email_addresses
from schemas.mappings import MappingConfig
from workers.sync.mappings import MappingProblem
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.classify import classify
from workers.sync.outcomes import SKIPPED_NO_CONTACT, DeadLetter, Outcome, Retry, Skipped, Written
from workers.sync.records import (
    activity_extra_fields,
    build_contact,
    build_email_message,
    build_reply_relation,
    build_task,
    contact_updates,
    source_values,
)
from workers.sync.resolve import choose_contact, contact_query, email_fields, index_entries

log = logging.getLogger(__name__)

#: the custom external-id field that makes activity writes idempotent inside Salesforce
EVENT_ID_FIELD = "Unify_Event_Id__c"
#: the Retry code of an event waiting while another worker creates its contact
CONTACT_BEING_CREATED = "CONTACT_BEING_CREATED"
#: seconds another worker's contact creation is given before an event waiting on it is retried
CREATION_WAIT = 3.0

#: codes meaning a referenced record is gone: for the contact, the index was stale
STALE_REFERENCE_CODES = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
#: seconds before an event whose cached contact turned out stale is resolved again
STALE_CONTACT_RETRY = 0.5
#: seconds a rep email -> User id answer is trusted
USER_CACHE_TTL = 3600.0

_DUPLICATE_ID = re.compile(r"id:\s*([a-zA-Z0-9]{15,18})")


@dataclass
class SyncContext:
    """Everything sync_batch needs besides the events; built once per worker process."""

    gateway: SalesforceGateway
    mappings: MappingConfig
    workspace_id: str
    ledger: Ledger
    index: ContactIndex
    locks: CreationLocks
    writeback_enabled: bool = True
    #: mappings that cannot work in this org (start-up check skipped, or the org changed since)
    mapping_errors: tuple[MappingProblem, ...] = ()
    #: rep email -> (Salesforce User id or None, monotonic time it was looked up)
    user_cache: dict[str, tuple[str | None, float]] = field(default_factory=dict)

    @property
    def email_fields(self) -> list[str]:
        return email_fields(self.mappings.contact.alternate_email_fields)


def sync_batch(events: list[Event], ctx: SyncContext) -> list[Outcome]:
    """Sync a batch; returns one outcome per event, in order. Raises nothing for Salesforce errors."""
    outcomes: list[Outcome | None] = [None] * len(events)
    live: list[int] = []
    for i, event in enumerate(events):
        if event.workspace_id != ctx.workspace_id:
            outcomes[i] = DeadLetter(
                code="WORKSPACE_NOT_SERVED",
                message=f"this deployment writes to the Salesforce org of workspace {ctx.workspace_id!r}, "
                        f"not {event.workspace_id!r}")
        else:
            live.append(i)
    try:
        _sync_live(events, live, outcomes, ctx)
    except SalesforceError as error:
        # a failure of a call shared by the whole batch (lookup, describe): same verdict for all
        verdict = _verdict(error)
        for i in live:
            if outcomes[i] is None:
                outcomes[i] = verdict
    return [o if o is not None else Retry(SalesforceError("INTERNAL", "no outcome decided"))
            for o in outcomes]


def _sync_live(events: list[Event], live: list[int], outcomes: list[Outcome | None],
               ctx: SyncContext) -> None:
    ws = ctx.workspace_id
    done = ctx.ledger.lookup(ws, [events[i].id for i in live])
    todo: list[int] = []
    for i in live:
        entry = done.get(events[i].id)
        if entry:
            outcomes[i] = Written(entry.sobject, entry.record_id, entry.contact_id, duplicate=True)
        else:
            todo.append(i)
    if not todo:
        return
    contacts = _resolve(events, todo, ctx)
    _create_missing_contacts(events, todo, contacts, outcomes, ctx)
    email_ix = [i for i in todo if outcomes[i] is None and not isinstance(events[i], ContactUpdated)]
    update_ix = [i for i in todo if outcomes[i] is None and isinstance(events[i], ContactUpdated)]
    if email_ix:
        _write_activities(events, email_ix, contacts, outcomes, ctx)
    if update_ix:
        _apply_contact_updates(events, update_ix, contacts, outcomes, ctx)


# --- contacts ---------------------------------------------------------------------------

def _addresses(event: Event) -> list[str]:
    if isinstance(event, ContactUpdated):
        return list(event.data.person.emails)
    return email_addresses(event)


def _resolve(events: list[Event], todo: list[int], ctx: SyncContext) -> dict[int, dict[str, Any]]:
    """The chosen contact per event index, from the index when it knows, else one SOQL IN query."""
    ws = ctx.workspace_id
    wanted = sorted({a for i in todo for a in _addresses(events[i])})
    known = ctx.index.get_many(ws, wanted)
    unknown = [a for a in wanted if a not in known]
    if unknown:
        found = ctx.gateway.query_in(contact_query(ctx.email_fields, []), unknown)
        ctx.index.put_contacts(ws, found, ctx.email_fields)
        by_address: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for contact in found:
            for address in index_entries(contact, ctx.email_fields):
                by_address[address].append(contact)
        for address in unknown:
            known[address] = by_address.get(address, [])
        ctx.index.put_misses(ws, [a for a in unknown if not by_address.get(a)])
    chosen: dict[int, dict[str, Any]] = {}
    for i in todo:
        addresses = _addresses(events[i])
        candidates = {c["Id"]: c for a in addresses for c in known.get(a, [])}
        match = choose_contact(addresses, list(candidates.values()), ctx.email_fields)
        if match is not None:
            chosen[i] = match
    return chosen


def _create_missing_contacts(events: list[Event], todo: list[int], contacts: dict[int, dict[str, Any]],
                             outcomes: list[Outcome | None], ctx: SyncContext) -> None:
    """Rule 3: create the Contact only for a Sync-to-Salesforce play, once per person across workers."""
    ws = ctx.workspace_id
    groups: dict[str, list[int]] = defaultdict(list)
    for i in todo:
        if i in contacts:
            continue
        play = events[i].data.play
        if not (play and play.sync_to_salesforce):
            outcomes[i] = Skipped(SKIPPED_NO_CONTACT,
                                  "no Salesforce contact has any of this person's addresses, "
                                  "and no Sync to Salesforce play asked to create one")
            continue
        person_key = min(_addresses(events[i]))
        groups[person_key].append(i)
    refusal = _mapping_refusal(ctx, "Contact") if groups else None
    if refusal is not None:
        for members in groups.values():
            for i in members:
                outcomes[i] = refusal
        return
    if not groups:
        return
    token = uuid.uuid4().hex
    locked: dict[str, list[str]] = {}
    for person_key, members in groups.items():
        addresses = sorted({a for i in members for a in _addresses(events[i])})
        if ctx.locks.acquire(ws, addresses, token):
            locked[person_key] = addresses
        else:
            for i in members:
                outcomes[i] = Retry(SalesforceError(CONTACT_BEING_CREATED,
                                                    "another worker is creating this contact"),
                                    after=CREATION_WAIT)
    if not locked:
        return
    try:
        # someone may have created the person since our lookup: ask Salesforce itself, not the cache
        all_addresses = sorted({a for addrs in locked.values() for a in addrs})
        existing = ctx.gateway.query_in(contact_query(ctx.email_fields, []), all_addresses)
        ctx.index.put_contacts(ws, existing, ctx.email_fields)
        to_create: list[tuple[str, list[int], dict[str, Any], tuple[str, ...]]] = []
        for person_key in locked:
            members = groups[person_key]
            addresses = _addresses(events[members[0]])
            match = choose_contact(addresses, existing, ctx.email_fields)
            if match is not None:
                for i in members:
                    contacts[i] = match
                continue
            event = events[members[0]]
            fields, warnings = build_contact(event.data.person, ctx.mappings, changes=source_values(event),
                                             fields=ctx.gateway.fields("Contact"), email=addresses[0])
            to_create.append((person_key, members, fields, tuple(warnings)))
        if not to_create:
            return
        results = ctx.gateway.create([("Contact", fields) for _, _, fields, _ in to_create])
        created = []
        for (person_key, members, fields, warnings), result in zip(to_create, results):
            if result.success:
                contact = {"Id": result.id, **fields, "_created": True, "_warnings": warnings}
                created.append({"Id": result.id, **fields})
                for i in members:
                    contacts[i] = contact
            else:
                verdict = _verdict(result.error)
                for i in members:
                    outcomes[i] = verdict
        ctx.index.put_contacts(ws, created, ctx.email_fields)
    finally:
        for addresses in locked.values():
            ctx.locks.release(ws, addresses, token)


# --- activities -------------------------------------------------------------------------

def _write_activities(events: list[Event], email_ix: list[int], contacts: dict[int, dict[str, Any]],
                      outcomes: list[Outcome | None], ctx: SyncContext) -> None:
    ws = ctx.workspace_id
    gateway = ctx.gateway
    enhanced = gateway.is_createable("EmailMessage")
    owners = _rep_owners([events[i] for i in email_ix], ctx)
    planned: list[tuple[int, str, dict[str, Any]]] = []
    for i in email_ix:
        event: EmailSent | EmailReplied = events[i]  # type: ignore[assignment]
        contact_id = contacts[i]["Id"]
        sobject = classify(event, writeback_enabled=ctx.writeback_enabled, enhanced_email=enhanced)
        refusal = _mapping_refusal(ctx, sobject)
        if refusal is not None:
            outcomes[i] = refusal
            continue
        described = gateway.fields(sobject)
        id_field = EVENT_ID_FIELD if EVENT_ID_FIELD in described else None
        extra, warnings = activity_extra_fields(event, ctx.mappings, sobject, fields=described)
        if sobject == "EmailMessage":
            record = build_email_message(event, contact_id=contact_id, event_id_field=id_field,
                                         extra_fields=extra)
        else:
            rep = event.data.rep
            owner = (rep.salesforce_user_id if rep else None) or owners.get(rep.email if rep else None)
            record = build_task(event, contact_id=contact_id, owner_id=owner, event_id_field=id_field,
                                extra_fields=extra)
        if warnings:
            contacts[i] = {**contacts[i], "_warnings": (*contacts[i].get("_warnings", ()), *warnings)}
        planned.append((i, sobject, record))

    written: dict[str, LedgerEntry] = {}
    earlier = _find_earlier_writes(events, planned, ctx)
    for i, sobject, _ in planned:
        if i in earlier:
            outcomes[i] = Written(sobject, earlier[i], contacts[i]["Id"], duplicate=True)
            written[events[i].id] = LedgerEntry(sobject, earlier[i], contacts[i]["Id"])
    planned = [p for p in planned if p[0] not in earlier]
    ctx.ledger.begin(ws, [events[i].id for i, _, _ in planned])
    results = gateway.create([(sobject, record) for _, sobject, record in planned]) if planned else []
    failed_ids: list[str] = []
    replies: list[tuple[int, str]] = []
    for (i, sobject, record), result in zip(planned, results):
        event = events[i]
        contact = contacts[i]
        if result.success:
            outcomes[i] = Written(sobject, result.id, contact["Id"],
                                  contact_created=bool(contact.get("_created")),
                                  warnings=tuple(contact.get("_warnings", ())))
            written[event.id] = LedgerEntry(sobject, result.id, contact["Id"])
            if sobject == "EmailMessage" and event.is_reply:
                replies.append((i, result.id))
            continue
        error = result.error
        duplicate_of = _already_written(error, record)
        if duplicate_of:
            outcomes[i] = Written(sobject, duplicate_of, contact["Id"], duplicate=True)
            written[event.id] = LedgerEntry(sobject, duplicate_of, contact["Id"])
        elif _stale_contact(error, contact):
            # the cached contact was deleted or merged in Salesforce since: forget it and resolve again
            ctx.index.remove_contact(ws, contact["Id"])
            outcomes[i] = Retry(error, after=STALE_CONTACT_RETRY)
            failed_ids.append(event.id)
        else:
            outcomes[i] = _verdict(error)
            failed_ids.append(event.id)
    ctx.ledger.record(ws, written)
    ctx.ledger.abandon(ws, failed_ids)
    if replies:
        _link_replies(events, replies, contacts, ctx)


def _find_earlier_writes(events: list[Event], planned: list[tuple[int, str, dict[str, Any]]],
                         ctx: SyncContext) -> dict[int, str]:
    """Record ids of events an earlier delivery began writing but never recorded (it died mid-write).

    Only "pending" events are looked up, so the normal path costs no query. The event-id field
    finds them when the org has it (even if it is not marked Unique there); without it an
    EmailMessage is found by its RFC Message-ID; a Task has no such key (see README).
    """
    pending = ctx.ledger.pending(ctx.workspace_id, [events[i].id for i, _, _ in planned])
    if not pending:
        return {}
    lookups: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for i, sobject, record in planned:
        if events[i].id not in pending:
            continue
        if record.get(EVENT_ID_FIELD):
            lookups[(sobject, EVENT_ID_FIELD)][record[EVENT_ID_FIELD]] = i
        elif sobject == "EmailMessage" and record.get("MessageIdentifier"):
            lookups[(sobject, "MessageIdentifier")][record["MessageIdentifier"]] = i
    found: dict[int, str] = {}
    for (sobject, key_field), wanted in lookups.items():
        rows = ctx.gateway.query_in(f"SELECT Id, {key_field} FROM {sobject} WHERE {key_field} IN {{values}}",
                                    list(wanted))
        for row in sorted(rows, key=lambda r: r["Id"]):  # several matches: the lowest id, deterministically
            i = wanted.get(row.get(key_field))
            if i is not None and i not in found:
                found[i] = row["Id"]
    return found


def _already_written(error: SalesforceError | None, record: dict[str, Any]) -> str | None:
    """An earlier delivery wrote this event: the unique event-id field says so, with the record id."""
    if error is None or error.code != "DUPLICATE_VALUE" or EVENT_ID_FIELD not in record:
        return None
    if error.fields and EVENT_ID_FIELD not in error.fields:
        return None
    match = _DUPLICATE_ID.search(error.message)
    return match.group(1) if match else None


def _stale_contact(error: SalesforceError | None, contact: dict[str, Any]) -> bool:
    return (error is not None and error.code in STALE_REFERENCE_CODES and not contact.get("_created")
            and (not error.fields or bool({"WhoId", "ToIds", "RelationId"} & set(error.fields))
                 or contact["Id"][:15] in error.message))


def _link_replies(events: list[Event], replies: list[tuple[int, str]],
                  contacts: dict[int, dict[str, Any]], ctx: SyncContext) -> None:
    """A reply's sender is the contact: link it with a FromAddress relation (ToIds cannot say that)."""
    records = [("EmailMessageRelation",
                build_reply_relation(em_id, contacts[i]["Id"], events[i].data.from_.email))
               for i, em_id in replies]
    try:
        results = ctx.gateway.create(records)
    except SalesforceError as error:
        log.warning("reply relations not written: %s", error)
        return
    for (i, _), result in zip(replies, results):
        if not result.success:
            log.warning("reply relation for event %s not written: %s", events[i].id, result.error)


def _rep_owners(events: list[EmailSent | EmailReplied], ctx: SyncContext) -> dict[str | None, str | None]:
    """Rep email -> Salesforce User id, so Task owner (and reports by owner) show the real rep."""
    emails = {e.data.rep.email for e in events
              if e.data.rep and e.data.rep.email and not e.data.rep.salesforce_user_id}
    now = time.monotonic()
    unknown = sorted(e for e in emails if e not in ctx.user_cache or now - ctx.user_cache[e][1] > USER_CACHE_TTL)
    if unknown:
        users = ctx.gateway.query_in(
            "SELECT Id, Email FROM User WHERE IsActive = true AND Email IN {values}", unknown)
        found = {str(u["Email"]).lower(): u["Id"] for u in users if u.get("Email")}
        for email in unknown:
            ctx.user_cache[email] = (found.get(email), now)
    return {email: ctx.user_cache[email][0] for email in emails}


# --- contact.updated --------------------------------------------------------------------

def _apply_contact_updates(events: list[Event], update_ix: list[int], contacts: dict[int, dict[str, Any]],
                           outcomes: list[Outcome | None], ctx: SyncContext) -> None:
    """Apply mapped person changes under the never-overwrite policy (rule 4)."""
    refusal = _mapping_refusal(ctx, "Contact")
    if refusal is not None:
        for i in update_ix:
            if not contacts[i].get("_created"):
                outcomes[i] = refusal
        update_ix = [i for i in update_ix if contacts[i].get("_created")]
    described = ctx.gateway.fields("Contact")
    targets = sorted({f.target for f in ctx.mappings.contact.fields if f.target in described})
    existing_ids = sorted({contacts[i]["Id"] for i in update_ix if not contacts[i].get("_created")})
    current: dict[str, dict[str, Any]] = {}
    if existing_ids and targets:
        select = ", ".join(["Id", *[t for t in targets if t != "Id"]])
        rows = ctx.gateway.query_in(f"SELECT {select} FROM Contact WHERE Id IN {{values}}", existing_ids)
        current = {row["Id"]: row for row in rows}
    planned: list[tuple[int, str, dict[str, Any], tuple[str, ...]]] = []
    for i in update_ix:
        event: ContactUpdated = events[i]  # type: ignore[assignment]
        contact = contacts[i]
        if contact.get("_created"):
            outcomes[i] = Written("Contact", contact["Id"], contact["Id"], contact_created=True,
                                  warnings=tuple(contact.get("_warnings", ())))
            continue
        fields, warnings = contact_updates(event.data.person, current.get(contact["Id"], {}),
                                           ctx.mappings, changes=source_values(event), fields=described)
        if not fields:
            outcomes[i] = Written("Contact", contact["Id"], contact["Id"], warnings=tuple(warnings))
        else:
            planned.append((i, contact["Id"], fields, tuple(warnings)))
    if not planned:
        _record_contact_writes(events, update_ix, outcomes, ctx)
        return
    results = ctx.gateway.update([("Contact", cid, fields) for _, cid, fields, _ in planned])
    for (i, cid, _, warnings), result in zip(planned, results):
        outcomes[i] = (Written("Contact", cid, cid, warnings=warnings) if result.success
                       else _verdict(result.error))
    _record_contact_writes(events, update_ix, outcomes, ctx)


def _record_contact_writes(events: list[Event], update_ix: list[int], outcomes: list[Outcome | None],
                           ctx: SyncContext) -> None:
    entries = {events[i].id: LedgerEntry("Contact", o.record_id, o.contact_id)
               for i in update_ix if isinstance((o := outcomes[i]), Written)}
    ctx.ledger.record(ctx.workspace_id, entries)


def _mapping_refusal(ctx: SyncContext, sobject: str) -> DeadLetter | None:
    """A write that would use a broken mapping fails visibly, to be replayed once the mapping is fixed.

    The seed's case: a mapping to a multi-select picklist "will cause sync failures"; quietly
    dropping the field instead would lose what the admin asked for without anyone noticing.
    """
    errors = [p for p in ctx.mapping_errors if p.object == sobject]
    if not errors:
        return None
    return DeadLetter(code="INVALID_MAPPING", message="; ".join(str(p) for p in errors),
                      fields=tuple(p.field for p in errors))


def _verdict(error: SalesforceError | None) -> Outcome:
    if error is None:
        error = SalesforceError("UNKNOWN_ERROR", "Salesforce reported a failure without an error")
    return Retry(error) if error.transient else DeadLetter.from_error(error)

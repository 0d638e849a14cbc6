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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeGuard

from events.ledger import LedgerEntry
from events.changes import parse_modstamp
from schemas.codes import ErrorCode
from schemas.events import ContactUpdated, EmailReplied, EmailSent, Event, email_addresses
from schemas.mappings import MappingConfig
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import RecordResult
from workers.sync.classify import Target, classify
from workers.sync.mappings import MappingProblem
from workers.sync.outcomes import (
    SKIPPED_ALREADY_LOGGED,
    SKIPPED_NO_CONTACT,
    DeadLetter,
    Outcome,
    Retry,
    Skipped,
    Waiting,
    Written,
)
from workers.sync.records import (
    MESSAGE_IDENTIFIER_LENGTH,
    activity_extra_fields,
    build_contact,
    build_email_message,
    build_lead,
    build_reply_relation,
    build_task,
    contact_updates,
    lead_updates,
    source_values,
)
from events.rep_users import TTL as REP_USERS_TTL
from workers.sync.stores import Gateway, LateReleases, LedgerStore, Locks, OwnWriteLog, PeopleIndex, RepUserCache
from workers.sync.resolve import choose_contact, choose_lead, contact_query, email_fields, index_entries, lead_query

log = logging.getLogger(__name__)

#: the custom external-id field that makes activity writes idempotent inside Salesforce
EVENT_ID_FIELD = "Unify_Event_Id__c"
#: the Retry code of an event waiting while another worker creates its contact
CONTACT_BEING_CREATED = ErrorCode.CONTACT_BEING_CREATED
#: seconds another worker's contact creation is given before an event waiting on it is retried
CREATION_WAIT = 3.0

#: codes meaning a referenced record is gone: for the contact, the index was stale
STALE_REFERENCE_CODES = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
#: Salesforce's refusal to write to (or name) a converted Lead: for a Lead, the index was stale
CONVERTED_LEAD = "CANNOT_UPDATE_CONVERTED_LEAD"
#: seconds before an event whose cached contact turned out stale is resolved again
STALE_CONTACT_RETRY = 0.5
#: seconds a rep email -> User id answer is trusted
USER_CACHE_TTL = REP_USERS_TTL

_DUPLICATE_ID = re.compile(r"id:\s*([a-zA-Z0-9]{15,18})")
_NO_CONTACT_DETAIL = ("no Salesforce contact has any of this person's addresses, and no Sync to Salesforce play "
                      "asked to create one")


@dataclass
class SyncContext:
    """Everything sync_batch needs besides the events; built once per worker process.

    The gateway and the stores are Protocols (workers/sync/stores.py): Redis and Salesforce in a
    worker, in-memory fakes in unit tests."""

    gateway: Gateway
    mappings: MappingConfig
    workspace_id: str
    ledger: LedgerStore
    index: PeopleIndex
    locks: Locks
    writeback_enabled: bool = True
    #: mappings that cannot work in this org (start-up check skipped, or the org changed since)
    mapping_errors: tuple[MappingProblem, ...] = ()
    #: rep email -> (Salesforce User id or None, wall-clock time it was looked up)
    user_cache: dict[str, tuple[str | None, float]] = field(default_factory=dict)
    #: the same answers shared by every worker process (None: this process's own only)
    users: RepUserCache | None = None
    #: where sfsync's own Contact writes are recorded, so the CRM cycle does not echo them (None: not recorded)
    own_writes: OwnWriteLog | None = None
    # --- leads, late contacts, email logged elsewhere: the workspace's settings
    #: when no Contact has any of the person's addresses, an unconverted Lead that has one is the record
    match_leads: bool = False
    #: what a play's Sync to Salesforce creates for a person nobody matches: "contact" or "lead"
    play_creates: str = "contact"
    #: the email -> Lead index (needed when Leads are matched or created)
    lead_index: PeopleIndex | None = None
    #: how an email nobody matches waits for its person to appear (None: it is skipped for good)
    waiting: Waiting | None = None
    #: where those emails wait, so a person sfsync creates gets them written (None: not released here)
    late: LateReleases | None = None
    #: an EmailMessage whose Message-ID the org already has (another integration logged it) is skipped
    skip_already_logged: bool = True

    @property
    def email_fields(self) -> list[str]:
        return email_fields(self.mappings.contact.alternate_email_fields)

    @property
    def lead_email_fields(self) -> list[str]:
        return email_fields(self.mappings.lead.alternate_email_fields)

    @property
    def leads_count_for_plays(self) -> bool:
        """A play asking for a person finds an existing Lead before creating anything."""
        return self.lead_index is not None and (self.match_leads or self.play_creates == "lead")


@dataclass(eq=False)
class EventWork:
    """One event on its way through a batch: the contact it belongs to, and its outcome once decided.

    Compared and hashed by identity, so the same event delivered twice in a batch is two pieces of work.
    """

    event: Event
    #: the Salesforce Contact (Id and the fields read or written), once chosen
    contact: dict[str, Any] | None = None
    #: True when this batch created the contact
    contact_created: bool = False
    #: values left out or cut to fit, reported with the outcome
    warnings: tuple[str, ...] = ()
    #: this batch wrote the contact, and the write is to be recorded as sfsync's own (see _record_own_writes)
    own_write: bool = False
    #: the object `contact` is: "Contact", or "Lead" (an unconverted Lead, matched or created)
    person_object: str = "Contact"
    #: an EmailMessage of the org that already has this email's Message-ID ({} none; None: not asked)
    logged_elsewhere: dict[str, Any] | None = None
    outcome: Outcome | None = None

    @cached_property
    def addresses(self) -> list[str]:
        """Every address that can identify the person, most specific first."""
        if isinstance(self.event, ContactUpdated):
            return list(self.event.data.person.emails)
        return email_addresses(self.event)

    @property
    def contact_id(self) -> str:
        if self.contact is None:
            raise ValueError(f"event {self.event.id} has no contact yet")
        contact_id: str = self.contact["Id"]
        return contact_id

    @property
    def may_create_contact(self) -> bool:
        """A Sync-to-Salesforce play asked for the person to be in Salesforce (who must have an address:
        a Contact without one never syncs back to Unify and could never be matched again)."""
        play = self.event.data.play
        return bool(play and play.sync_to_salesforce and self.addresses)

    def use_contact(self, contact: dict[str, Any], *, created: bool = False,
                    warnings: Iterable[str] = (), sobject: str = "Contact") -> None:
        self.contact = contact
        self.contact_created = created
        self.person_object = sobject
        self.warnings = (*self.warnings, *warnings)

    @property
    def message_identifier(self) -> str | None:
        """The Message-ID an EmailMessage of this email carries (None when it is too long to be one)."""
        message_id = getattr(self.event.data, "message_id", None)
        return message_id if message_id and len(message_id) <= MESSAGE_IDENTIFIER_LENGTH else None


#: outcomes decided by one step of the batch, for the work it was given
Decisions = Mapping[EventWork, Outcome]


def sync_batch(events: list[Event], ctx: SyncContext) -> list[Outcome]:
    """Sync a batch; returns one outcome per event, in order. Raises nothing for Salesforce errors."""
    strangers = {e.workspace_id for e in events} - {ctx.workspace_id}
    if strangers:  # the pool groups a batch by workspace before the gate: this is a caller's bug
        raise ValueError(f"sync_batch of workspace {ctx.workspace_id!r} was given events of {sorted(strangers)!r}")
    works = [EventWork(event) for event in events]
    try:
        _sync_served(works, ctx)
    except SalesforceError as error:
        # a failure of a call shared by the whole batch (lookup, describe): same verdict for all
        _settle(dict.fromkeys(_undecided(works), _verdict(error)))
    return [_decided(work) for work in works]


def _sync_served(works: list[EventWork], ctx: SyncContext) -> None:
    """Every step decides the outcomes it can and leaves the rest to the next; the last decides all."""
    try:
        _sync_steps(works, ctx)
    finally:  # contacts written before a later step failed were written all the same
        _record_own_writes(works, ctx)


def _sync_steps(works: list[EventWork], ctx: SyncContext) -> None:
    _settle(_recorded_earlier(works, ctx))
    fresh = _undecided(works)
    if not fresh:
        return
    _resolve(fresh, ctx)
    _create_missing_contacts([w for w in fresh if w.contact is None], ctx)
    ready = _undecided(fresh)
    emails = [w for w in ready if not isinstance(w.event, ContactUpdated)]
    updates = [w for w in ready if isinstance(w.event, ContactUpdated)]
    if emails:
        _write_activities(emails, ctx)
    if updates:
        _apply_contact_updates(updates, ctx)


def _settle(decisions: Decisions) -> None:
    for work, outcome in decisions.items():
        work.outcome = outcome


def _undecided(works: Iterable[EventWork]) -> list[EventWork]:
    return [w for w in works if w.outcome is None]


def _decided(work: EventWork) -> Outcome:
    if work.outcome is None:  # every step decides for all it is given: this is a bug here, not a failure
        raise RuntimeError(f"sync_batch decided no outcome for event {work.event.id}")
    return work.outcome


def _recorded_earlier(works: list[EventWork], ctx: SyncContext) -> Decisions:
    """Events the ledger says an earlier delivery already wrote."""
    done = ctx.ledger.lookup(ctx.workspace_id, [w.event.id for w in works])
    return {w: Written(entry.sobject, entry.record_id, entry.contact_id, duplicate=True,
                       person_object=_object_of(entry.contact_id))
            for w in works if (entry := done.get(w.event.id))}


def _object_of(record_id: str | None) -> str:
    """Contact or Lead, by the id's key prefix (the same in every org)."""
    return "Lead" if record_id and record_id.startswith("00Q") else "Contact"


# --- contacts ---------------------------------------------------------------------------

def _resolve(works: list[EventWork], ctx: SyncContext) -> None:
    """Choose each event's contact (or, with match_leads, Lead) from the indexes when they know, else by
    one lookup call for the batch, which also asks what else the batch needs (reps, logged emails)."""
    ws = ctx.workspace_id
    wanted = sorted({a for w in works for a in w.addresses})
    known = ctx.index.get_many(ws, wanted)
    unknown = [a for a in wanted if a not in known]
    lead_addresses = _lead_addresses(works, known, ctx)
    # lead addresses are asked only of a context with a lead index (_lead_addresses)
    leads = ctx.lead_index.get_many(ws, lead_addresses) if lead_addresses else {}  # type: ignore[union-attr]
    unknown_leads = [a for a in lead_addresses if a not in leads]
    if unknown or unknown_leads:
        found, found_leads = _look_up_people(works, unknown, unknown_leads, ctx)
        _remember_people(ctx.index, ws, unknown, found, ctx.email_fields, known)
        if unknown_leads:
            _remember_people(ctx.lead_index, ws, unknown_leads, found_leads, ctx.lead_email_fields, leads)  # type: ignore[arg-type]  # the same
    for work in works:
        candidates = {c["Id"]: c for a in work.addresses for c in known.get(a, [])}
        match = choose_contact(work.addresses, list(candidates.values()), ctx.email_fields)
        if match is not None:
            work.use_contact(match)
        elif ctx.match_leads:
            _use_lead(work, leads, ctx)


def _lead_addresses(works: list[EventWork], known: dict[str, list[dict[str, Any]]], ctx: SyncContext) -> list[str]:
    """With match_leads, the addresses of the people no Contact is known for yet (asked about Leads too,
    in the same call as their Contacts); a Contact always wins, so people with one cost nothing more."""
    if not ctx.match_leads or ctx.lead_index is None:
        return []
    return sorted({a for w in works if not any(known.get(b) for b in w.addresses) for a in w.addresses})


def _remember_people(index: PeopleIndex, ws: str, asked: list[str], found: list[dict[str, Any]],
                     fields: list[str], known: dict[str, list[dict[str, Any]]]) -> None:
    """Index what a lookup found, and its misses (one round trip); `known` gets each asked address's candidates."""
    by_address: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in found:
        for address in index_entries(record, fields):
            by_address[address].append(record)
    for address in asked:
        known[address] = by_address.get(address, [])
    index.put_contacts(ws, found, fields, misses=[a for a in asked if not by_address.get(a)])


def _use_lead(work: EventWork, leads: dict[str, list[dict[str, Any]]], ctx: SyncContext) -> None:
    candidates = {c["Id"]: c for a in work.addresses for c in leads.get(a, [])}
    chosen = choose_lead(work.addresses, list(candidates.values()), ctx.lead_email_fields)
    if chosen is not None:
        sobject, record = chosen
        work.use_contact(dict(record), sobject=sobject)


def _look_up_people(works: list[EventWork], unknown: list[str], unknown_leads: list[str],
                    ctx: SyncContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Contacts (and Leads) of these addresses in one call, which asks along what the batch needs next:
    the reps whose Tasks it writes, and which of its emails the org already has (Message-IDs)."""
    queries: dict[str, tuple[str, list[str]]] = {}
    if unknown:
        queries["contacts"] = (contact_query(ctx.email_fields, []), unknown)
    if unknown_leads:
        queries["leads"] = (lead_query(ctx.lead_email_fields), unknown_leads)
    reps = _reps_to_find(_task_emails(works, ctx), ctx, time.time())
    if reps:
        queries["reps"] = (USERS_QUERY, reps)
    logged = _emails_to_check(works, ctx)
    if logged:
        # _emails_to_check keeps only emails with a Message-ID
        queries["logged"] = (_logged_query(ctx), sorted({w.message_identifier for w in logged}))  # type: ignore[misc]
    answers = dict(zip(queries, ctx.gateway.query_in_together(list(queries.values()))))
    if (users := answers.get("reps")) is not None:
        _remember_reps(ctx, reps, users, time.time())
    if (rows := answers.get("logged")) is not None:
        _note_logged(logged, rows)
    found_leads = answers.get("leads")
    if unknown_leads and found_leads is None:  # asked along and failed: it is needed, ask on its own
        found_leads = ctx.gateway.query_in(*queries["leads"])
    return answers.get("contacts") or [], found_leads or []


def _create_missing_contacts(works: list[EventWork], ctx: SyncContext) -> None:
    """Create the Contact (or Lead, `play_creates: lead`) only for a Sync-to-Salesforce play, once per
    person across workers.

    Each event either gets a contact (found after all, or created) or an outcome.
    """
    _settle({w: _no_contact(w, ctx) for w in works if not w.may_create_contact})
    people: dict[str, list[EventWork]] = defaultdict(list)
    for work in works:
        if work.may_create_contact:
            people[min(work.addresses)].append(work)
    if not people:
        return
    refusal = _mapping_refusal(ctx, _created_object(ctx))
    if refusal is not None:
        _settle({w: refusal for members in people.values() for w in members})
        return
    token = uuid.uuid4().hex
    locked: dict[str, list[str]] = {}
    for person_key, members in people.items():
        addresses = sorted({a for w in members for a in w.addresses})
        if ctx.locks.acquire(ctx.workspace_id, addresses, token):
            locked[person_key] = addresses
        else:
            _settle(dict.fromkeys(members, Retry(SalesforceError(
                CONTACT_BEING_CREATED, "another worker is creating this contact"), after=CREATION_WAIT)))
    if not locked:
        return
    try:
        _settle(_find_or_create_people({k: people[k] for k in locked}, locked, ctx))
    finally:
        for addresses in locked.values():
            ctx.locks.release(ctx.workspace_id, addresses, token)


def _no_contact(work: EventWork, ctx: SyncContext) -> Skipped:
    """Skipped: nobody to write to. An email may wait for its person to appear (late_contact_days)."""
    wait = None if isinstance(work.event, ContactUpdated) else ctx.waiting
    return Skipped(SKIPPED_NO_CONTACT, _NO_CONTACT_DETAIL, wait=wait)


def _created_object(ctx: SyncContext) -> str:
    return "Lead" if ctx.play_creates == "lead" else "Contact"


def _people_in_salesforce(addresses: list[str], ctx: SyncContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Contacts (and, when Leads count, the Leads) with these addresses, asked of Salesforce itself."""
    contacts = (contact_query(ctx.email_fields, []), addresses)
    if not ctx.leads_count_for_plays:
        return ctx.gateway.query_in(*contacts), []
    leads = (lead_query(ctx.lead_email_fields), addresses)
    found, found_leads = ctx.gateway.query_in_together([contacts, leads])
    if found_leads is None:
        found_leads = ctx.gateway.query_in(*leads)
    # leads_count_for_plays is true only with a lead index
    ctx.lead_index.put_contacts(ctx.workspace_id, found_leads, ctx.lead_email_fields)  # type: ignore[union-attr]
    return found or [], found_leads


def _find_or_create_people(people: dict[str, list[EventWork]], addresses: dict[str, list[str]],
                           ctx: SyncContext) -> Decisions:
    """Under the creation locks: give each person's events a contact; failed creations' verdicts."""
    ws = ctx.workspace_id
    # someone may have created the person since our lookup: ask Salesforce itself, not the cache
    existing, existing_leads = _people_in_salesforce(sorted({a for addrs in addresses.values() for a in addrs}), ctx)
    ctx.index.put_contacts(ws, existing, ctx.email_fields)
    creates = _created_object(ctx)
    to_create: list[tuple[list[EventWork], dict[str, Any], list[str]]] = []
    for members in people.values():
        first = members[0]
        match = choose_contact(first.addresses, existing, ctx.email_fields)
        found = ("Contact", match) if match is not None else \
            choose_lead(first.addresses, existing_leads, ctx.lead_email_fields)
        if found is not None:
            for work in members:
                work.use_contact(dict(found[1]), sobject=found[0])
            continue
        build = build_lead if creates == "Lead" else build_contact
        fields, warnings = build(first.event.data.person, ctx.mappings, changes=source_values(first.event),
                                 fields=ctx.gateway.fields(creates), email=first.addresses[0])
        to_create.append((members, fields, warnings))
    if not to_create:
        return {}
    results = ctx.gateway.create([(creates, fields) for _, fields, _ in to_create])
    failed: dict[EventWork, Outcome] = {}
    created: list[dict[str, Any]] = []
    for (members, fields, warnings), result in zip(to_create, results):
        if not result.success:
            failed.update(dict.fromkeys(members, _verdict(result.error)))
            continue
        record = {"Id": result.id, **fields}
        created.append(record)
        for work in members:
            work.use_contact(record, created=True, warnings=warnings, sobject=creates)
            work.own_write = True
    if creates == "Lead":
        # a context whose plays create Leads has a lead index (the worker's always has one: runtime.py)
        ctx.lead_index.put_contacts(ws, created, ctx.lead_email_fields)  # type: ignore[union-attr]
    else:
        ctx.index.put_contacts(ws, created, ctx.email_fields)
    _release_waiting(created, creates, ctx)
    return failed


def _release_waiting(created: list[dict[str, Any]], sobject: str, ctx: SyncContext) -> None:
    """Emails that waited for these people (skipped before they existed) are written now, in order.

    A new Lead releases them only when Leads are matched: otherwise they would find nobody again.
    """
    if not created or ctx.late is None or ctx.waiting is None or (sobject == "Lead" and not ctx.match_leads):
        return
    fields = ctx.lead_email_fields if sobject == "Lead" else ctx.email_fields
    addresses = [a for record in created for a in index_entries(record, fields)]
    try:
        released = ctx.late.release(ctx.workspace_id, addresses, days=ctx.waiting.days)
    except Exception as error:  # noqa: BLE001 - the CRM cycle releases them when it reads the new records
        log.warning("waiting emails of %d new people not released: %s", len(created), error,
                    extra={"workspace_id": ctx.workspace_id})
        return
    if released:
        log.info("%d waiting email(s) released: their people were just created", len(released),
                 extra={"workspace_id": ctx.workspace_id})


# --- activities -------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PlannedWrite:
    """The activity record to be created for one email event."""

    work: EventWork
    sobject: str
    record: dict[str, Any]


def _write_activities(works: list[EventWork], ctx: SyncContext) -> None:
    """Log each email as a Task or EmailMessage; every event ends written, retried or dead-lettered."""
    ws = ctx.workspace_id
    planned, refused = _plan_activities(works, ctx)
    _settle(refused)
    earlier = _find_earlier_writes(planned, ctx)
    _settle({p.work: Written(p.sobject, earlier[p.work], p.work.contact_id, duplicate=True,
                             person_object=p.work.person_object)
             for p in planned if p.work in earlier})
    _settle(_logged_elsewhere([p for p in planned if p.work not in earlier], ctx))
    to_write = [p for p in planned if p.work.outcome is None]
    ctx.ledger.begin(ws, [p.work.event.id for p in to_write])
    results = ctx.gateway.create([(p.sobject, p.record) for p in to_write]) if to_write else []
    _settle({p.work: _activity_outcome(p, result, ctx) for p, result in zip(to_write, results)})
    ctx.ledger.finish(ws, {p.work.event.id: _ledger_entry(p.work.outcome)
                           for p in planned if isinstance(p.work.outcome, Written)},
                      [p.work.event.id for p in to_write if not isinstance(p.work.outcome, Written)])
    replies = [(p.work, p.work.outcome.record_id) for p in to_write
               if p.sobject == "EmailMessage" and p.work.event.is_reply  # type: ignore[union-attr]  # emails only
               and isinstance(p.work.outcome, Written) and not p.work.outcome.duplicate]
    if replies:
        _link_replies(replies, ctx)


def _plan_activities(works: list[EventWork], ctx: SyncContext) -> tuple[list[PlannedWrite], Decisions]:
    """The record each email becomes; refusals for those whose object has a broken mapping."""
    kinds = _targets(works, ctx)
    # only a Task has an owner to find
    owners = _rep_owners([w.event for w, sobject in kinds if sobject == "Task"], ctx)  # type: ignore[misc]  # emails only
    planned: list[PlannedWrite] = []
    refused: dict[EventWork, Outcome] = {}
    for work, sobject in kinds:
        event: EmailSent | EmailReplied = work.event  # type: ignore[assignment]  # sync_steps sends emails only
        refusal = _mapping_refusal(ctx, sobject)
        if refusal is not None:
            refused[work] = refusal
            continue
        described = ctx.gateway.fields(sobject)
        id_field = EVENT_ID_FIELD if EVENT_ID_FIELD in described else None
        extra, warnings = activity_extra_fields(event, ctx.mappings, sobject, fields=described)
        if sobject == "EmailMessage":
            record = build_email_message(event, contact_id=work.contact_id, event_id_field=id_field,
                                         extra_fields=extra)
        else:
            rep = event.data.rep
            owner = (rep.salesforce_user_id if rep else None) or owners.get(rep.email if rep else None)
            record = build_task(event, contact_id=work.contact_id, owner_id=owner, event_id_field=id_field,
                                extra_fields=extra)
        work.warnings = (*work.warnings, *warnings)
        planned.append(PlannedWrite(work, sobject, record))
    return planned, refused


def _activity_outcome(planned: PlannedWrite, result: RecordResult, ctx: SyncContext) -> Outcome:
    """What Salesforce's answer to one activity create means for its event."""
    work = planned.work
    if result.success:  # a record Salesforce created has an id
        return Written(planned.sobject, result.id, work.contact_id, contact_created=work.contact_created,  # type: ignore[arg-type]
                       warnings=work.warnings, person_object=work.person_object)
    error = result.error
    duplicate_of = _already_written(error, planned.record)
    if duplicate_of:
        return Written(planned.sobject, duplicate_of, work.contact_id, duplicate=True, person_object=work.person_object)
    if _stale_contact(error, work):
        return _resolve_again(work, error, ctx)
    return _verdict(error)


def _resolve_again(work: EventWork, error: SalesforceError, ctx: SyncContext) -> Retry:
    """The cached contact was deleted or merged in Salesforce since (or the cached Lead converted):
    forget it, and resolve the event again shortly."""
    index = ctx.lead_index if work.person_object == "Lead" and ctx.lead_index is not None else ctx.index
    index.remove_contact(ctx.workspace_id, work.contact_id)
    return Retry(error, after=STALE_CONTACT_RETRY)


def _ledger_entry(outcome: Written) -> LedgerEntry:
    return LedgerEntry(outcome.sobject, outcome.record_id, outcome.contact_id)


def _find_earlier_writes(planned: list[PlannedWrite], ctx: SyncContext) -> dict[EventWork, str]:
    """Record ids of events an earlier delivery began writing but never recorded (it died mid-write).

    Only "pending" events are looked up, so the normal path costs no query. The event-id field
    finds them when the org has it (even if it is not marked Unique there); without it an
    EmailMessage is found by its RFC Message-ID; a Task has no such key, so it is written again.
    """
    pending = ctx.ledger.pending(ctx.workspace_id, [p.work.event.id for p in planned])
    if not pending:
        return {}
    lookups: dict[tuple[str, str], dict[str, EventWork]] = defaultdict(dict)
    for p in planned:
        if p.work.event.id not in pending:
            continue
        if p.record.get(EVENT_ID_FIELD):
            lookups[(p.sobject, EVENT_ID_FIELD)][p.record[EVENT_ID_FIELD]] = p.work
        elif p.sobject == "EmailMessage" and p.record.get("MessageIdentifier"):
            lookups[(p.sobject, "MessageIdentifier")][p.record["MessageIdentifier"]] = p.work
    found: dict[EventWork, str] = {}
    for (sobject, key_field), wanted in lookups.items():
        # S608: the object (Task or EmailMessage) and key field are sfsync's own names; the values go in through format_soql
        rows = ctx.gateway.query_in(f"SELECT Id, {key_field} FROM {sobject} WHERE {key_field} IN {{values}}",  # noqa: S608
                                    list(wanted))
        for row in sorted(rows, key=lambda r: r["Id"]):  # several matches: the lowest id, deterministically
            work = wanted.get(row.get(key_field))  # type: ignore[arg-type]  # a row without the field finds none
            if work is not None and work not in found:
                found[work] = row["Id"]
    return found


def _already_written(error: SalesforceError | None, record: dict[str, Any]) -> str | None:
    """An earlier delivery wrote this event: the unique event-id field says so, with the record id."""
    if error is None or error.code != "DUPLICATE_VALUE" or EVENT_ID_FIELD not in record:
        return None
    if error.fields and EVENT_ID_FIELD not in error.fields:
        return None
    match = _DUPLICATE_ID.search(error.message)
    return match.group(1) if match else None


def _stale_contact(error: SalesforceError | None, work: EventWork) -> TypeGuard[SalesforceError]:
    """The event's contact (or Lead) is gone or converted in Salesforce: true only with an error."""
    if error is None or work.contact_created:
        return False
    if error.code == CONVERTED_LEAD:
        return work.person_object == "Lead"
    return (error.code in STALE_REFERENCE_CODES
            and (not error.fields or bool({"WhoId", "ToIds", "RelationId"} & set(error.fields))
                 or work.contact_id[:15] in error.message))


# --- email logged elsewhere ---------------------------------------------------------------

def _emails_to_check(works: list[EventWork], ctx: SyncContext) -> list[EventWork]:
    """Emails of the batch that become EmailMessages and whose Message-ID has not been looked up yet."""
    if not ctx.skip_already_logged:
        return []
    emails = [w for w in works if isinstance(w.event, (EmailSent, EmailReplied))
              and w.logged_elsewhere is None and w.message_identifier]
    return [w for w, sobject in _targets(emails, ctx) if sobject == "EmailMessage"] if emails else []


def _logged_query(ctx: SyncContext) -> str:
    own = f", {EVENT_ID_FIELD}" if EVENT_ID_FIELD in ctx.gateway.fields("EmailMessage") else ""
    # S608: sfsync's own field names only; the Message-IDs go in through format_soql
    return f"SELECT Id, MessageIdentifier{own} FROM EmailMessage WHERE MessageIdentifier IN {{values}}"  # noqa: S608


def _note_logged(works: list[EventWork], rows: list[dict[str, Any]]) -> None:
    """What the org answered for these emails' Message-IDs (Salesforce compares them ignoring case)."""
    by_identifier: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["Id"]):  # several: the lowest id, deterministically
        identifier = str(row.get("MessageIdentifier") or "").lower()
        if identifier:
            by_identifier.setdefault(identifier, row)
    for work in works:  # emails with a Message-ID only (_emails_to_check)
        work.logged_elsewhere = by_identifier.get(work.message_identifier.lower(), {})  # type: ignore[union-attr]


def _logged_elsewhere(planned: list[PlannedWrite], ctx: SyncContext) -> Decisions:
    """EmailMessages not to create: the org already has one with the email's Message-ID.

    One query for the batch, unless the batch's lookup call already asked. A match sfsync itself wrote
    for this very event (its event id on it) is that write; any other was logged by another integration
    (a rep's mail client, say): the email is skipped as `already_logged`, never written twice.
    """
    emails = [p.work for p in planned if p.sobject == "EmailMessage"]
    unasked = _emails_to_check(emails, ctx)
    if unasked:
        _note_logged(unasked, ctx.gateway.query_in(_logged_query(ctx),  # each has a Message-ID (_emails_to_check)
                                                   sorted({w.message_identifier for w in unasked})))  # type: ignore[misc]
    decided: dict[EventWork, Outcome] = {}
    for work in emails:
        row = work.logged_elsewhere if ctx.skip_already_logged else None
        if not row:
            continue
        if row.get(EVENT_ID_FIELD) == work.event.id:
            decided[work] = Written("EmailMessage", row["Id"], work.contact_id, duplicate=True,
                                    person_object=work.person_object)
        else:
            decided[work] = Skipped(SKIPPED_ALREADY_LOGGED, f"EmailMessage {row['Id']} in Salesforce already has "
                                                            "this email's Message-ID (logged by another integration)")
    return decided


def _link_replies(replies: list[tuple[EventWork, str]], ctx: SyncContext) -> None:
    """A reply's sender is the contact: link it with a FromAddress relation (ToIds cannot say that)."""
    records = [("EmailMessageRelation",
                build_reply_relation(em_id, work.contact_id, work.event.data.from_.email))  # type: ignore[union-attr]  # replies only
               for work, em_id in replies]
    try:
        results = ctx.gateway.create(records)
    except SalesforceError as error:
        log.warning("reply relations not written: %s", error)
        return
    for (work, _), result in zip(replies, results):
        if not result.success:
            log.warning("reply relation for event %s not written: %s", work.event.id, result.error)


def _targets(works: list[EventWork], ctx: SyncContext) -> list[tuple[EventWork, Target]]:
    """Each email with the object it becomes (Task or EmailMessage)."""
    enhanced = ctx.gateway.is_createable("EmailMessage")
    return [(work, classify(work.event, writeback_enabled=ctx.writeback_enabled, enhanced_email=enhanced))  # type: ignore[arg-type]  # emails only
            for work in works]


def _task_emails(works: list[EventWork], ctx: SyncContext) -> list[EmailSent | EmailReplied]:
    emails = [w for w in works if isinstance(w.event, (EmailSent, EmailReplied))]
    return [w.event for w, sobject in _targets(emails, ctx) if sobject == "Task"] if emails else []  # type: ignore[misc]  # emails, above


USERS_QUERY = "SELECT Id, Email FROM User WHERE IsActive = true AND Email IN {values}"


def _rep_emails(events: list[EmailSent | EmailReplied]) -> set[str]:
    """Emails of the reps whose Salesforce user the events do not name."""
    return {e.data.rep.email for e in events if e.data.rep and e.data.rep.email and not e.data.rep.salesforce_user_id}


def _reps_to_find(events: list[EmailSent | EmailReplied], ctx: SyncContext, now: float) -> list[str]:
    """Rep emails of these events that neither this process nor the workspace's shared answers know."""
    emails = _rep_emails(events)

    def stale() -> list[str]:
        return sorted(e for e in emails if e not in ctx.user_cache or now - ctx.user_cache[e][1] > USER_CACHE_TTL)

    unknown = stale()
    if unknown and ctx.users is not None:
        ctx.user_cache.update(ctx.users.get_many(ctx.workspace_id, unknown, now))
        unknown = stale()
    return unknown


def _remember_reps(ctx: SyncContext, asked: list[str], users: list[dict[str, Any]], now: float) -> None:
    found = {str(u["Email"]).lower(): u["Id"] for u in users if u.get("Email")}
    answers = {email: (found.get(email), now) for email in asked}
    ctx.user_cache.update(answers)
    if ctx.users is not None:
        ctx.users.put_many(ctx.workspace_id, answers)


def _rep_owners(events: list[EmailSent | EmailReplied], ctx: SyncContext) -> dict[str | None, str | None]:
    """Rep email -> Salesforce User id, so Task owner (and reports by owner) show the real rep."""
    now = time.time()
    unknown = _reps_to_find(events, ctx, now)
    if unknown:
        _remember_reps(ctx, unknown, ctx.gateway.query_in(USERS_QUERY, unknown), now)
    return {email: ctx.user_cache[email][0] for email in _rep_emails(events)}


# --- contact.updated --------------------------------------------------------------------

def _apply_contact_updates(works: list[EventWork], ctx: SyncContext) -> None:
    """Apply mapped person changes under the never-overwrite policy, to Contacts and to Leads."""
    for sobject in ("Contact", "Lead"):
        mine = [w for w in works if w.person_object == sobject]
        if mine:
            _apply_person_updates(mine, sobject, ctx)


def _apply_person_updates(works: list[EventWork], sobject: str, ctx: SyncContext) -> None:
    refusal = _mapping_refusal(ctx, sobject)
    if refusal is not None:
        # a record this batch just created was written with what the mapping allows: nothing to apply
        _settle({w: refusal for w in works if not w.contact_created})
        works = [w for w in works if w.contact_created]
    planned, decided, before = _plan_contact_updates(works, sobject, ctx)
    _settle(decided)
    if planned:
        # one record per contact: a collection may not name the same Id twice
        results = ctx.gateway.update([(sobject, contact_id, fields) for contact_id, (_, fields) in planned.items()])
        _settle({work: _update_outcome(work, result, ctx)
                 for (members, _), result in zip(planned.values(), results) for work in members})
        written = [cid for cid, result in zip(planned, results) if result.success]
        for contact_id in _recordable(written, before, ctx):
            for work in planned[contact_id][0]:
                work.own_write = True
    ctx.ledger.record(ctx.workspace_id, {w.event.id: _ledger_entry(w.outcome)
                                         for w in works if isinstance(w.outcome, Written)})


def _update_outcome(work: EventWork, result: RecordResult, ctx: SyncContext) -> Outcome:
    if result.success:
        return Written(work.person_object, work.contact_id, work.contact_id, warnings=work.warnings,
                       person_object=work.person_object)
    if _stale_contact(result.error, work) and result.error.code == CONVERTED_LEAD:
        return _resolve_again(work, result.error, ctx)
    return _verdict(result.error)


def _plan_contact_updates(works: list[EventWork], sobject: str, ctx: SyncContext
                          ) -> tuple[dict[str, tuple[list[EventWork], dict[str, Any]]], Decisions, dict[str, str]]:
    """The fields to update per existing contact (or Lead) with the events asking, outcomes of events
    with nothing left to write, and each record's SystemModstamp before the write. Several updates of
    one record are applied in order, each seeing what the one before it wrote, so the field policy
    holds as if they were written one by one."""
    described = ctx.gateway.fields(sobject)
    section = ctx.mappings.lead if sobject == "Lead" else ctx.mappings.contact
    updates = lead_updates if sobject == "Lead" else contact_updates
    targets = sorted({f.target for f in section.fields if f.target in described})
    existing_ids = sorted({w.contact_id for w in works if not w.contact_created})
    current: dict[str, dict[str, Any]] = {}
    before: dict[str, str] = {}
    if existing_ids and targets:
        select = ", ".join(["Id", "SystemModstamp", *[t for t in targets if t not in ("Id", "SystemModstamp")]])
        # S608: the fields are the org's own (from its describe), the object Contact or Lead; ids go in through format_soql
        rows = ctx.gateway.query_in(f"SELECT {select} FROM {sobject} WHERE Id IN {{values}}", existing_ids)  # noqa: S608
        for row in rows:
            stamp = row.pop("SystemModstamp", None)  # not a field to write: kept apart from the values
            if stamp:
                before[row["Id"]] = stamp
            current[row["Id"]] = row
    planned: dict[str, tuple[list[EventWork], dict[str, Any]]] = {}
    decided: dict[EventWork, Outcome] = {}
    for work in works:
        if work.contact_created:
            decided[work] = Written(sobject, work.contact_id, work.contact_id, contact_created=True,
                                    warnings=work.warnings, person_object=sobject)
            continue
        event: ContactUpdated = work.event  # type: ignore[assignment]  # sync_steps sends updates only
        state = current.setdefault(work.contact_id, {})
        fields, warnings = updates(event.data.person, state, ctx.mappings, changes=source_values(event),
                                   fields=described)
        work.warnings = (*work.warnings, *warnings)
        if fields:
            state.update(fields)
            members, merged = planned.setdefault(work.contact_id, ([], {}))
            members.append(work)
            merged.update(fields)
        else:
            decided[work] = Written(sobject, work.contact_id, work.contact_id, warnings=work.warnings,
                                    person_object=sobject)
    return planned, decided, before


# --- sfsync's own contact writes ---------------------------------------------------------

def _recordable(contact_ids: list[str], before: dict[str, str], ctx: SyncContext) -> list[str]:
    """The updated contacts whose write may be recorded as sfsync's own: those whose state before it
    was already accounted for. A person's edit the CRM cycle has not read yet would otherwise be
    hidden behind sfsync's newer stamp; left unrecorded, the cycle publishes the contact (with the
    person's values and sfsync's) instead."""
    if ctx.own_writes is None:
        return []
    known = [cid for cid in contact_ids if cid in before]
    seen = ctx.own_writes.accounted_for(ctx.workspace_id, [(cid, parse_modstamp(before[cid])) for cid in known])
    return [cid for cid, ok in zip(known, seen) if ok]


def _record_own_writes(works: list[EventWork], ctx: SyncContext) -> None:
    """Record (Id, SystemModstamp) of the contacts (and Leads) this batch wrote, so the CRM cycle knows
    them for sfsync's. Collection writes return no SystemModstamp: one query per batch and object reads
    it back."""
    if ctx.own_writes is None:
        return
    for sobject in ("Contact", "Lead"):
        ids = sorted({w.contact_id for w in works if w.own_write and w.person_object == sobject})
        if not ids:
            continue
        try:
            # S608: the object is Contact or Lead; the ids go in through format_soql
            rows = ctx.gateway.query_in(f"SELECT Id, SystemModstamp FROM {sobject} WHERE Id IN {{values}}", ids)  # noqa: S608
        except SalesforceError as error:
            log.warning("could not read back the SystemModstamp of %d %s records sfsync wrote; the CRM cycle "
                        "will send them to Unify as changes: %s", len(ids), sobject, error,
                        extra={"workspace_id": ctx.workspace_id})
            continue
        ctx.own_writes.record(ctx.workspace_id, [(row["Id"], parse_modstamp(row["SystemModstamp"])) for row in rows],
                              now_ms=int(time.time() * 1000))


def _mapping_refusal(ctx: SyncContext, sobject: str) -> DeadLetter | None:
    """A write that would use a broken mapping fails visibly, to be replayed once the mapping is fixed.

    A mapping to a multi-select picklist, for instance, makes Salesforce refuse every write;
    quietly dropping the field instead would lose what the admin asked for without anyone noticing.
    """
    errors = [p for p in ctx.mapping_errors if p.object == sobject]
    if not errors:
        return None
    return DeadLetter(code=ErrorCode.INVALID_MAPPING, message="; ".join(str(p) for p in errors),
                      fields=tuple(p.field for p in errors))


def _verdict(error: SalesforceError | None) -> Outcome:
    if error is None:
        error = SalesforceError(ErrorCode.UNKNOWN_ERROR, "Salesforce reported a failure without an error")
    return Retry(error) if error.transient else DeadLetter.from_error(error)

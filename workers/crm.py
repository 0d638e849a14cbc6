"""The CRM sync cycle: contacts changed in Salesforce flow back to the contact index and to Unify.

One cycle = one queryAll of Contacts whose SystemModstamp is past a floor derived from the
watermark, paged by nextRecordsUrl; each page updates the email -> contact index and pushes
`salesforce.contact.changed` events (each (Id, SystemModstamp) once); the watermark moves only
after every page is handled. A workspace that matches or creates Leads has its Leads read the
same way, with a watermark of their own. Each page's addresses release the emails waiting for
them (late contacts): one Redis script a page, no Salesforce call. docs/crm-sync.md explains the
choices.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from events.changes import parse_modstamp
from events.contact_index import ContactIndex
from events.keys import key
from events.late_contacts import LateContacts
from events.lua import script
from events.outbound import (
    HandledChange,
    OutboundQueue,
    contact_addresses,
    contact_changed_event,
    iso_millis,
    lead_changed_event,
)
from events.own_writes import OwnWrites
from schemas.mappings import check_api_name
from workers.observability.metrics import record_crm_cycle
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway

log = logging.getLogger("sfsync.crm")

#: seconds the cycle lock lives without renewal: how long a dead holder can block the next cycle
LOCK_TTL = 60.0
#: seconds between renewals of the lock while a cycle runs (well under LOCK_TTL)
LOCK_RENEW_EVERY = 15.0
#: Contact fields every change needs besides the address and mapped fields
BASE_FIELDS = ("Id", "IsDeleted", "SystemModstamp", "CreatedDate")
#: what a Lead change needs besides those: whether (and into which Contact) it was converted
LEAD_BASE_FIELDS = (*BASE_FIELDS, "IsConverted", "ConvertedContactId")

# what the cycle does with one changed row
PUBLISH = "publish"
OWN_CHANGE = "own_change"
NO_EMAIL = "no_email"


class CycleAborted(Exception):
    """The cycle lost its lock (it stalled past LOCK_TTL): another cycle may be running, stop here."""


# --- time arithmetic (pure) ------------------------------------------------------------------

def soql_datetime(ms: int) -> str:
    """A SOQL datetime literal (unquoted): `2026-11-26T18:03:00.000Z`."""
    return iso_millis(ms)


@dataclass(frozen=True)
class Watermark:
    """The newest SystemModstamp handled, and when (our clock) the cycle that handled it read Salesforce."""

    stamp_ms: int
    read_at_ms: int

    def settled(self, overlap_ms: int) -> bool:
        # the read began more than `overlap` after the newest change: every transaction stamped
        # at or before it had committed and was in that read, so nothing before it can still appear
        return self.read_at_ms - overlap_ms > self.stamp_ms


def query_floor(mark: Watermark | None, *, now_ms: int, overlap_ms: int, lookback_ms: int) -> int:
    """The cycle reads changes with SystemModstamp strictly after this (ms).

    First run: now minus the lookback. Afterwards the watermark, less the overlap while changes
    near it may still be committing; once settled, the watermark itself, so an idle org is not
    re-read over and over.
    """
    if mark is None:
        return now_ms - lookback_ms
    return mark.stamp_ms if mark.settled(overlap_ms) else mark.stamp_ms - overlap_ms


def advance(mark: Watermark | None, *, floor_ms: int, newest_ms: int | None, read_at_ms: int) -> Watermark:
    """The watermark after a cycle that read from `floor_ms` at `read_at_ms`; it never moves back."""
    base = mark.stamp_ms if mark is not None else floor_ms
    return Watermark(max(base, newest_ms) if newest_ms is not None else base, read_at_ms)


def selected_fields(email_fields: Sequence[str], mapped_fields: Sequence[str],
                    base: Sequence[str] = BASE_FIELDS) -> list[str]:
    """The fields the cycle reads, each once (SOQL refuses repeats), all plain API names."""
    out: list[str] = []
    for name in (*base, *email_fields, *mapped_fields):
        check_api_name(name)  # field names can't be escaped in SOQL
        if name.lower() not in {f.lower() for f in out}:
            out.append(name)
    return out


def changes_query(fields: Sequence[str], floor_ms: int, sobject: str = "Contact") -> str:
    # ORDER BY Id as well: rows with the same stamp page the same way every time
    # S608: no outside value goes in unquoted: fields are checked API names (above), the stamp is a number
    return (f"SELECT {', '.join(fields)} FROM {check_api_name(sobject)} WHERE SystemModstamp > "  # noqa: S608
            f"{soql_datetime(floor_ms)} ORDER BY SystemModstamp, Id")


def dedupe(records: Iterable[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(modstamp ms, record) once per (Id, SystemModstamp), in the order first seen."""
    seen: set[tuple[str, int]] = set()
    out: list[tuple[int, dict[str, Any]]] = []
    for record in records:
        ms = parse_modstamp(record["SystemModstamp"])
        if (record["Id"], ms) not in seen:
            seen.add((record["Id"], ms))
            out.append((ms, record))
    return out


def classify_change(record: dict[str, Any], addresses: Sequence[str], *, recorded_as_own: bool) -> str:
    """PUBLISH, OWN_CHANGE (sfsync's own create or fill: not echoed) or NO_EMAIL (does not sync to Unify).

    A row is sfsync's own change only when sfsync recorded its exact (Id, SystemModstamp) when it
    wrote the contact (`recorded_as_own`); who the row says modified it last plays no part, so a
    person signed in as the integration user is published like anyone else. Deletions are always
    published: sfsync never deletes contacts.
    """
    if recorded_as_own and not record.get("IsDeleted"):
        return OWN_CHANGE
    if not addresses:
        return NO_EMAIL
    return PUBLISH


# --- Redis state -------------------------------------------------------------------------------

class CycleLock:
    """One cycle per workspace across hosts: a Redis key with a token, renewed while the cycle runs.

    If the holder dies the key expires after LOCK_TTL; if the holder stalls past it, `lost` turns
    true and the watermark write (fenced on the token) is refused.
    """

    def __init__(self, client: redis.Redis, workspace_id: str, *, ttl: float = LOCK_TTL,
                 renew_every: float = LOCK_RENEW_EVERY):
        self.redis = client
        self.name = key(workspace_id, "crm", "lock")
        self._renew_script = script(client, "lock_renew")
        self._release = script(client, "lock_release")
        self.token = uuid.uuid4().hex
        self.ttl_ms = int(ttl * 1000)
        self.renew_every = renew_every
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.redis.set(self.name, self.token, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(target=self._renew, name="crm-lock-renewal", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                renewed = self._renew_script(keys=[self.name], args=[self.token, self.ttl_ms])
            except redis.RedisError:
                log.warning("could not renew the CRM cycle lock; trying again")
                continue
            if not renewed:
                self.lost = True
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._release(keys=[self.name], args=[self.token])


class CycleState:
    """The watermark (a hash in Redis) of one workspace's Contacts, or of its Leads (`sobject="Lead"`)."""

    def __init__(self, client: redis.Redis, workspace_id: str, sobject: str = "Contact"):
        self.redis = client
        self.ws = workspace_id
        self._save = script(client, "crm_save_watermark")
        self.watermark_key = key(workspace_id, "crm", "watermark" if sobject == "Contact" else "lead_watermark")

    def load(self) -> Watermark | None:
        raw = self.redis.hgetall(self.watermark_key)
        if not raw or "stamp_ms" not in raw:
            return None
        return Watermark(int(raw["stamp_ms"]), int(raw.get("read_at_ms", 0)))

    def save(self, mark: Watermark, lock: CycleLock) -> bool:
        """Store the watermark only while `lock` is still ours; False if it was lost."""
        return bool(self._save(keys=[lock.name, self.watermark_key],
                               args=[lock.token, mark.stamp_ms, mark.read_at_ms, iso_millis(mark.stamp_ms)]))


# --- the cycle ---------------------------------------------------------------------------------

@dataclass
class CycleReport:
    """What one cycle did; written to `sfsync:{<ws>}:crm:last` for `sfsync status`."""

    changed: int = 0             # (Id, SystemModstamp) pairs seen for the first time
    published: int = 0
    skipped_no_email: int = 0
    own_changes_ignored: int = 0
    deleted: int = 0
    already_handled: int = 0     # read again in the overlap window, handled by an earlier cycle
    pages: int = 0
    api_calls: int = 0
    lag_seconds: float = 0.0     # oldest change published: how long after its SystemModstamp
    floor: str = ""
    watermark: str = ""
    leads_published: int = 0     # of `published`, Lead changes (workspaces that match or create Leads)
    lead_watermark: str = ""
    late_released: int = 0       # emails that waited for their contact, released by this cycle's records


@dataclass
class CycleContext:
    """Everything one cycle needs; built from the worker's runtime, or by tests."""

    gateway: SalesforceGateway
    index: ContactIndex
    outbound: OutboundQueue
    state: CycleState
    own_writes: OwnWrites
    workspace_id: str
    email_fields: list[str]
    mapped_fields: list[str]
    overlap_ms: int
    lookback_ms: int
    clock: Callable[[], float] = field(default=time.time)
    #: the workspace's Leads, read as well when it matches or creates them (None: Contacts only)
    leads: "LeadChanges | None" = None
    #: emails waiting for their contact, released by the addresses the cycle reads (None: none wait)
    late: LateContacts | None = None
    #: days they wait (late_contact_days)
    late_days: float = 0.0

    def sources(self) -> list["ChangeSource"]:
        contacts = ChangeSource("Contact", self.index, self.email_fields, self.mapped_fields, self.state,
                                releases_waiting=True)
        if self.leads is None:
            return [contacts]
        leads = self.leads
        return [contacts, ChangeSource("Lead", leads.index, leads.email_fields, leads.mapped_fields, leads.state,
                                       releases_waiting=leads.matched)]


@dataclass
class LeadChanges:
    """What the cycle needs to read a workspace's Lead changes."""

    index: ContactIndex
    email_fields: list[str]
    mapped_fields: list[str]
    state: CycleState
    #: Leads are matched (match_leads): a new one is someone waiting emails may belong to
    matched: bool


@dataclass(frozen=True)
class ChangeSource:
    """One object the cycle reads changes of, with its index, fields and watermark."""

    sobject: str
    index: ContactIndex
    email_fields: list[str]
    mapped_fields: list[str]
    state: CycleState
    #: its live records release the emails waiting for their addresses
    releases_waiting: bool

    @property
    def is_lead(self) -> bool:
        return self.sobject == "Lead"


def sync_changes(ctx: CycleContext, lock: CycleLock, report: CycleReport | None = None) -> CycleReport:
    """Run one cycle under `lock`, counting into `report` (so a failed cycle still shows what it did).

    Raises SalesforceError or CycleAborted; then the watermark of the object being read has not moved
    (Contacts read before a failure on Leads keep theirs).
    """
    report = report if report is not None else CycleReport()
    calls_before = ctx.gateway.calls
    read_at_ms = int(ctx.clock() * 1000)
    try:
        next_floors = [_read_changes(ctx, lock, report, source, read_at_ms) for source in ctx.sources()]
    finally:
        report.api_calls = ctx.gateway.calls - calls_before
    # a later query starts after its floor, so records of older changes are never needed again
    # (Contacts and Leads share the records: the earlier floor of the two)
    next_floor = min(next_floors)
    ctx.outbound.forget_before(ctx.workspace_id, next_floor)
    ctx.own_writes.forget_before(ctx.workspace_id, next_floor)
    if ctx.late is not None and ctx.late_days <= 0:
        ctx.late.expire(ctx.workspace_id, days=0)  # late contacts turned off: nothing waits any more
    return report


def _read_changes(ctx: CycleContext, lock: CycleLock, report: CycleReport, source: ChangeSource,
                  read_at_ms: int) -> int:
    """Read and handle one object's changes page by page, then advance its watermark; its next floor."""
    mark = source.state.load()
    floor_ms = query_floor(mark, now_ms=read_at_ms, overlap_ms=ctx.overlap_ms, lookback_ms=ctx.lookback_ms)
    if not source.is_lead:
        report.floor = iso_millis(floor_ms)
    base = LEAD_BASE_FIELDS if source.is_lead else BASE_FIELDS
    soql = changes_query(selected_fields(source.email_fields, source.mapped_fields, base), floor_ms, source.sobject)
    newest: int | None = None
    page = ctx.gateway.query_page(soql, include_deleted=True)
    while True:
        report.pages += 1
        rows = dedupe(r for r in page.get("records", []))
        if rows:
            newest = max(newest or 0, max(ms for ms, _ in rows))
            _handle_page(ctx, rows, report, source)
        next_url = page.get("nextRecordsUrl")
        if page.get("done", True) or not next_url:
            break
        if lock.lost:
            raise CycleAborted("the CRM cycle lock expired while the cycle ran")
        page = ctx.gateway.query_more(next_url)
    new_mark = advance(mark, floor_ms=floor_ms, newest_ms=newest, read_at_ms=read_at_ms)
    if not source.state.save(new_mark, lock):
        raise CycleAborted("the CRM cycle lock expired before the watermark could be advanced")
    if source.is_lead:
        report.lead_watermark = iso_millis(new_mark.stamp_ms)
    else:
        report.watermark = iso_millis(new_mark.stamp_ms)
    return query_floor(new_mark, now_ms=read_at_ms, overlap_ms=ctx.overlap_ms, lookback_ms=ctx.lookback_ms)


def _handle_page(ctx: CycleContext, rows: list[tuple[int, dict[str, Any]]], report: CycleReport,
                 source: ChangeSource) -> None:
    ws = ctx.workspace_id
    live = [record for _, record in rows if not record.get("IsDeleted")]
    own = ctx.own_writes.recorded(ws, [(record["Id"], ms) for ms, record in rows])
    # the index first: it is idempotent, so a crash before the publish below just redoes it
    source.index.put_contacts(ws, live, source.email_fields)
    for _, record in rows:
        if record.get("IsDeleted"):
            source.index.remove_contact(ws, record["Id"])
    build = lead_changed_event if source.is_lead else contact_changed_event
    changes: list[HandledChange] = []
    verdicts: list[str] = []
    for (ms, record), recorded in zip(rows, own):
        addresses = contact_addresses(record, source.email_fields)
        verdict = classify_change(record, addresses, recorded_as_own=recorded)
        event = (build(ws, record, modstamp_ms=ms, email_fields=source.email_fields,
                       mapped_fields=source.mapped_fields) if verdict == PUBLISH else None)
        changes.append(HandledChange(record["Id"], ms, event))
        verdicts.append(verdict)
    fresh = ctx.outbound.publish_once(ws, changes)
    now_ms = int(ctx.clock() * 1000)
    for change, verdict, is_new in zip(changes, verdicts, fresh):
        if not is_new:
            report.already_handled += 1
            continue
        report.changed += 1
        if verdict == PUBLISH:
            report.published += 1
            report.leads_published += source.is_lead
            report.deleted += bool(change.event["data"]["deleted"])  # type: ignore[index]  # PUBLISH: built above
            report.lag_seconds = max(report.lag_seconds, round((now_ms - change.modstamp_ms) / 1000, 3))
        elif verdict == OWN_CHANGE:
            report.own_changes_ignored += 1
        else:
            report.skipped_no_email += 1
    _release_waiting(ctx, live, report, source)


def _release_waiting(ctx: CycleContext, live: list[dict[str, Any]], report: CycleReport,
                     source: ChangeSource) -> None:
    """Emails waiting for any address of these records (new ones, or addresses just changed) are
    written now: one Redis script for the page, whatever the number of emails waiting."""
    if ctx.late is None or ctx.late_days <= 0 or not source.releases_waiting or not live:
        return
    # a converted Lead's emails go to its Contact, whose own change this cycle reads
    records = [r for r in live if not (source.is_lead and r.get("IsConverted"))]
    addresses = [a for record in records for a in contact_addresses(record, source.email_fields)]
    report.late_released += len(ctx.late.release(ctx.workspace_id, addresses, days=ctx.late_days))


# --- the task's body ---------------------------------------------------------------------------

def run_cycle(runtime, workspace_id: str | None = None) -> dict:
    """One cycle for one workspace (by default the environment's); returns its counts."""
    ws = workspace_id or runtime.settings.workspace_id
    client = runtime.redis
    lock = CycleLock(client, ws)
    if not lock.acquire():
        client.hincrby(key(ws, "crm", "totals"), "locked_out", 1)
        log.info("CRM cycle skipped: another one is running for workspace %s", ws)
        return {"skipped": "another cycle is running"}
    started = time.time()
    report = CycleReport()
    error = ""
    try:
        sync_changes(_cycle_context(runtime, client, ws), lock, report)
    except (SalesforceError, CycleAborted) as exc:
        error = f"{getattr(exc, 'code', type(exc).__name__)}: {getattr(exc, 'message', str(exc))}"[:500]
        log.warning("CRM cycle of %s failed, watermark kept: %s", ws, error, extra={"workspace_id": ws})
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        log.exception("CRM cycle of %s failed unexpectedly, watermark kept", ws, extra={"workspace_id": ws})
        _record(client, ws, report, started, error)
        record_crm_cycle(None, ok=False)
        raise
    finally:
        lock.release()
    _record(client, ws, report, started, error)
    record_crm_cycle(report.lag_seconds if not error else None, ok=not error)
    log.info("CRM cycle of %s %s", ws, "done" if not error else "failed",
             extra={"workspace_id": ws, "crm_cycle": {**asdict(report), "error": error or None}})
    return {**asdict(report), "ok": not error, "error": error or None}


def _cycle_context(runtime, client: redis.Redis, ws: str) -> CycleContext:
    """The cycle's context from the workspace's org connection (raises SalesforceError when it cannot log in)."""
    settings = runtime.settings
    context = runtime.connection(ws).context()
    leads = None
    if context.lead_index is not None and (context.match_leads or context.play_creates == "lead"):
        leads = LeadChanges(index=context.lead_index, email_fields=context.lead_email_fields,
                            mapped_fields=[m.target for m in context.mappings.lead.fields],
                            state=CycleState(client, ws, "Lead"), matched=context.match_leads)
    return CycleContext(
        gateway=context.gateway, index=context.index, outbound=OutboundQueue(client),
        state=CycleState(client, ws), own_writes=context.own_writes or OwnWrites(client), workspace_id=ws,
        email_fields=context.email_fields, mapped_fields=[m.target for m in context.mappings.contact.fields],
        overlap_ms=int(settings.crm_sync_overlap * 1000),
        lookback_ms=int((settings.crm_sync_lookback if settings.crm_sync_lookback is not None
                         else settings.crm_sync_overlap) * 1000),
        leads=leads, late=context.late, late_days=context.waiting.days if context.waiting is not None else 0.0)


def _record(client: redis.Redis, ws: str, report: CycleReport, started: float, error: str) -> None:
    finished = time.time()
    last = {**{k: str(v) for k, v in asdict(report).items()},
            "started_at": iso_millis(int(started * 1000)), "finished_at": iso_millis(int(finished * 1000)),
            "duration_seconds": f"{finished - started:.3f}", "ok": "0" if error else "1", "error": error}
    pipe = client.pipeline(transaction=True)
    pipe.delete(key(ws, "crm", "last"))
    pipe.hset(key(ws, "crm", "last"), mapping=last)
    pipe.hincrby(key(ws, "crm", "totals"), "failed" if error else "ok", 1)
    pipe.execute()

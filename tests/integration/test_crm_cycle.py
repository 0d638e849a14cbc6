"""The CRM sync cycle (issue #6): Salesforce contact changes reach the index and Unify's outbound queue.

Real Redis, the emulator over HTTP, and the cycle run by a real worker (or beat) process; the
emulator's admin API edits records the way a person in Salesforce would.
"""

from __future__ import annotations

import json
import time

import pytest

from events.contact_index import ContactIndex
from events.keys import key
from events.outbound import OutboundQueue
from events.own_writes import OwnWrites
from events.publish import publisher_app
from events.topology import CONTROL_QUEUE, OUTBOUND_QUEUE
from schemas.settings import load_settings
from tests.conftest import WORKSPACE
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from workers.crm import CycleContext, CycleLock, CycleState, sync_changes
from workers.local.stack import beat_process
from workers.salesforce.gateway import SalesforceGateway
from workers.status import collect_status, render_status
from workers.tasks import CRM_SYNC_CYCLE

pytestmark = pytest.mark.integration

EMAIL_FIELDS = ["Email", "Secondary_Email__c"]
MAPPED = ["FirstName", "LastName", "Title", "Phone", "MailingCountryCode", "Unify_Sequence_Status__c"]
#: worker settings for these tests beyond the stack's defaults (token auth, as in the demo; a long
#: interval, so only the cycles a test asks for run)
CRM: dict = {}


# --- helpers ---------------------------------------------------------------------------------

def outbound(redis_client) -> list[dict]:
    """Everything on unify.outbound, oldest first (LPUSH'd, so the list's tail is the oldest)."""
    return [json.loads(raw) for raw in reversed(redis_client.lrange(OUTBOUND_QUEUE, 0, -1))]


def last_cycle(redis_client) -> dict:
    return redis_client.hgetall(key(WORKSPACE, "crm", "last"))


def totals(redis_client) -> dict:
    return {k: int(v) for k, v in redis_client.hgetall(key(WORKSPACE, "crm", "totals")).items()}


def run_cycle_on_worker(stack, timeout: float = 60.0) -> dict:
    """Send the beat task to the control queue as beat would, and wait until a worker finished it."""
    before = sum(totals(stack.redis).get(k, 0) for k in ("ok", "failed", "locked_out"))
    publisher_app(stack.redis_url).send_task(CRM_SYNC_CYCLE, queue=CONTROL_QUEUE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(totals(stack.redis).get(k, 0) for k in ("ok", "failed", "locked_out")) > before:
            return last_cycle(stack.redis)
        time.sleep(0.1)
    logs = "\n".join(p.output()[-3000:] for p in stack.processes)
    raise AssertionError(f"no CRM cycle finished within {timeout}s; worker output:\n{logs}")


def in_process_context(stack, **overrides) -> CycleContext:
    """The cycle's collaborators built in the test process (for API-call accounting without a worker)."""
    settings = load_settings(stack.env())
    values = dict(gateway=SalesforceGateway.from_settings(settings), index=ContactIndex(stack.redis),
                  outbound=OutboundQueue(stack.redis), state=CycleState(stack.redis, WORKSPACE),
                  own_writes=OwnWrites(stack.redis), workspace_id=WORKSPACE, email_fields=EMAIL_FIELDS,
                  mapped_fields=MAPPED, overlap_ms=60_000, lookback_ms=60_000)
    values.update(overrides)
    return CycleContext(**values)


def run_in_process(ctx: CycleContext):
    lock = CycleLock(ctx.state.redis, WORKSPACE)
    assert lock.acquire()
    try:
        return sync_changes(ctx, lock)
    finally:
        lock.release()


def watermark(redis_client) -> dict:
    return redis_client.hgetall(key(WORKSPACE, "crm", "watermark"))


# --- the help article's story: an address corrected after a bounce --------------------------------

def test_given_a_bounced_address_when_corrected_in_salesforce_then_the_next_cycle_makes_it_match(stack):
    # given Jane in Salesforce under her old address, and a worker that already matched it
    (jane,) = stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe",
                                            "Email": "jane@old-acme.example"}])
    stack.start_worker(**CRM)
    run_cycle_on_worker(stack)  # seeding Jane is itself a human change: published, then out of the way
    stack.redis.delete(OUTBOUND_QUEUE)
    to_old = email_event(to="jane@old-acme.example")
    to_new_early = email_event(to="jane@new-acme.example")
    stack.publish([to_old, to_new_early])
    early = stack.wait_outcomes([to_old["id"], to_new_early["id"]])
    assert early[to_old["id"]]["contact_id"] == jane
    assert early[to_new_early["id"]]["outcome"] == "skipped_no_contact"

    # when someone corrects the address in Salesforce and the next cycle runs
    stack.admin.edit("Contact", jane, Email="jane@new-acme.example")
    cycle = run_cycle_on_worker(stack)

    # then Unify hears of it, the new address matches, the old one no longer does
    assert cycle["ok"] == "1" and cycle["published"] == "1", cycle
    (event,) = outbound(stack.redis)
    assert event["type"] == "salesforce.contact.changed" and event["workspace_id"] == WORKSPACE
    assert event["data"]["contact_id"] == jane
    assert event["data"]["emails"] == ["jane@new-acme.example"]
    assert event["data"]["deleted"] is False
    to_new = email_event(to="jane@new-acme.example")
    to_old_again = email_event(to="jane@old-acme.example")
    stack.publish([to_new, to_old_again])
    late = stack.wait_outcomes([to_new["id"], to_old_again["id"]])
    assert late[to_new["id"]]["outcome"] == "written" and late[to_new["id"]]["contact_id"] == jane
    assert late[to_old_again["id"]]["outcome"] == "skipped_no_contact"


def test_given_sfsync_own_writes_when_the_cycle_runs_then_they_are_not_echoed(stack):
    # given a contact a person made, already reported to Unify
    (jane,) = stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane@acme.example"}])
    stack.start_worker(**CRM)
    run_cycle_on_worker(stack)
    stack.redis.delete(OUTBOUND_QUEUE)

    # when sfsync itself fills a field on it and creates a new contact for a Sync-to-Salesforce play
    fill = contact_updated_event(emails=["jane@acme.example"], changes={"sequence_status": "Completed"})
    create = email_event(to="new.person@acme.example", play=SYNC_PLAY)
    stack.publish([fill, create])
    stack.wait_outcomes([fill["id"], create["id"]])
    assert stack.admin.get("Contact", jane)["Unify_Sequence_Status__c"] == "Completed"
    cycle = run_cycle_on_worker(stack)

    # then neither comes back to Unify as a change
    assert cycle["ok"] == "1", cycle
    assert cycle["own_changes_ignored"] == "2" and cycle["published"] == "0", cycle
    assert outbound(stack.redis) == []

    # and a person's later edit on top of sfsync's fill still does
    stack.admin.edit("Contact", jane, Title="CRO")
    cycle = run_cycle_on_worker(stack)
    assert cycle["published"] == "1", cycle
    (event,) = outbound(stack.redis)
    assert event["data"]["fields"]["Title"] == "CRO"
    assert event["data"]["fields"]["Unify_Sequence_Status__c"] == "Completed"


def test_given_a_contact_sfsync_created_when_a_person_signed_in_as_the_integration_user_edits_it_then_it_is_published(
        stack):
    # given a contact sfsync created for a Sync-to-Salesforce play, not echoed back to Unify
    stack.start_worker(**CRM)
    run_cycle_on_worker(stack)  # the first cycle sets the watermark
    create = email_event(to="new.person@acme.example", play=SYNC_PLAY)
    stack.publish([create])
    created = stack.wait_outcomes([create["id"]])[create["id"]]
    assert created["outcome"] == "written" and created["contact_created"] == "1", created
    contact = created["contact_id"]
    first = run_cycle_on_worker(stack)
    assert first["own_changes_ignored"] == "1" and first["published"] == "0", first
    assert outbound(stack.redis) == []

    # when a person signed in as the integration user edits it (the last modifier stays sfsync's user)
    api_user = stack.admin.state()["api_user_id"]
    edited = stack.admin.edit("Contact", contact, as_user=api_user, Title="VP Sales")
    assert edited["LastModifiedById"] == api_user
    cycle = run_cycle_on_worker(stack)

    # then Unify hears of it: its (Id, SystemModstamp) is not one sfsync wrote
    assert cycle["published"] == "1" and cycle["own_changes_ignored"] == "0", cycle
    (event,) = outbound(stack.redis)
    assert event["data"]["contact_id"] == contact and event["data"]["fields"]["Title"] == "VP Sales"


def test_given_a_person_edit_masked_by_an_sfsync_fill_before_the_next_cycle_then_it_is_still_published(stack):
    # A non-address field on purpose: telling the last modifier apart missed such an edit when an
    # sfsync fill landed on it before the next cycle (it caught only changed addresses). sfsync now
    # checks, before recording its fill as its own, that the contact's previous stamp was already
    # read by a cycle; Jane's edit was not, so the fill is left unrecorded and the row is published.
    (jane,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@old.example"}])
    stack.start_worker(**CRM)
    run_cycle_on_worker(stack)
    stack.redis.delete(OUTBOUND_QUEUE)
    # when a person edits her title and, before the next cycle, sfsync fills a field
    stack.admin.edit("Contact", jane, Title="CRO")
    fill = contact_updated_event(emails=["jane@old.example"], changes={"sequence_status": "Completed"})
    stack.publish([fill])
    stack.wait_outcomes([fill["id"]])
    cycle = run_cycle_on_worker(stack)
    # then the row carries sfsync's stamp, but the person's edit is not lost
    assert cycle["published"] == "1", cycle
    (event,) = outbound(stack.redis)
    assert event["data"]["fields"]["Title"] == "CRO"
    assert event["data"]["fields"]["Unify_Sequence_Status__c"] == "Completed"


# --- deletes, contacts without email, status ----------------------------------------------------

def test_given_deleted_and_emailless_contacts_when_a_cycle_runs_then_deletes_are_sent_and_emailless_skipped(stack):
    gone, no_email = stack.admin.seed("Contact", [{"LastName": "Gone", "Email": "gone@acme.example"},
                                                  {"LastName": "Nomail"}])
    stack.start_worker(**CRM)
    first = run_cycle_on_worker(stack)
    assert first["published"] == "1" and first["skipped_no_email"] == "1", first
    stack.redis.delete(OUTBOUND_QUEUE)

    stack.admin.delete("Contact", gone)
    second = run_cycle_on_worker(stack)

    assert second["published"] == "1" and second["deleted"] == "1", second
    (event,) = outbound(stack.redis)
    assert event["data"]["deleted"] is True and event["data"]["contact_id"] == gone
    assert ContactIndex(stack.redis).get_many(WORKSPACE, ["gone@acme.example"]) == {}
    to_gone = email_event(to="gone@acme.example")
    stack.publish([to_gone])
    assert stack.wait_outcomes([to_gone["id"]])[to_gone["id"]]["outcome"] == "skipped_no_contact"
    # and `sfsync status` shows the last cycle
    status = collect_status(load_settings(stack.env()))["crm_cycle"]
    assert status["ok"] is True and status["error"] is None and status["published"] == 1
    assert status["deleted"] == 1 and status["api_calls"] == 1 and status["lag_seconds"] >= 0
    assert status["watermark"] and status["finished_at"] and status["totals"] == {"ok": 2}
    render_status(collect_status(load_settings(stack.env())))


# --- cost ---------------------------------------------------------------------------------------

def test_given_no_changes_when_a_cycle_runs_then_it_costs_one_api_call(stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"}])
    ctx = in_process_context(stack)
    run_in_process(ctx)  # first run: publishes the seeded contact
    before = stack.admin.api_calls()

    report = run_in_process(ctx)

    assert stack.admin.api_calls() - before == 1
    assert report.api_calls == 1 and report.changed == 0 and report.already_handled == 1


def test_given_a_settled_watermark_when_nothing_changed_then_a_burst_is_not_read_again(stack):
    # given 2,500 changes read by one cycle, and (a short overlap later) once more for late commits
    stack.admin.seed("Contact", [{"LastName": f"C {n}", "Email": f"c{n}@acme.example"} for n in range(2500)])
    ctx = in_process_context(stack, overlap_ms=300)
    first = run_in_process(ctx)
    # the emulator stamps a bulk seed 1 ms apart, so its last stamps can be ahead of the wall clock
    time.sleep(max(0.0, int(watermark(stack.redis)["stamp_ms"]) / 1000 + 0.4 - time.time()))
    run_in_process(ctx)
    before = stack.admin.api_calls()

    # when the next cycle runs and nothing changed
    settled = run_in_process(ctx)

    # then it reads from the watermark itself: one call, no rows
    # (2 calls, one per page: own changes are recognised by their recorded (Id, SystemModstamp),
    # so no call looks up the integration user any more)
    assert first.pages == 2 and first.published == 2500 and first.api_calls == 2
    assert stack.admin.api_calls() - before == 1
    assert settled.api_calls == 1 and settled.already_handled == 0 and settled.changed == 0


def test_given_5000_changed_contacts_when_one_cycle_runs_then_three_pages_publish_each_once(stack):
    # given a worker that has run (its start-up describe calls are behind it) ...
    stack.start_worker(**CRM)
    run_cycle_on_worker(stack)
    # ... and 5,000 contacts a person imported since (admin.seed: fresh SystemModstamps, human user)
    ids = stack.admin.seed("Contact", [{"LastName": f"Bulk {n}", "Email": f"bulk{n}@acme.example"}
                                       for n in range(5000)])
    stamps = sorted(c["SystemModstamp"] for c in stack.admin.records("Contact"))
    assert len(set(stamps)) == 5000  # every record got its own, fresh stamp
    calls_before = stack.admin.api_calls()

    # when one cycle runs
    cycle = run_cycle_on_worker(stack)

    # then it read 3 pages and made no other call
    assert cycle["ok"] == "1", cycle
    assert cycle["pages"] == "3" and cycle["published"] == "5000", cycle
    assert stack.admin.api_calls() - calls_before == 3 == int(cycle["api_calls"])
    events = outbound(stack.redis)
    assert sorted(e["data"]["contact_id"] for e in events) == sorted(ids)
    assert len({e["id"] for e in events}) == 5000
    assert watermark(stack.redis)["stamp"][:23] == stamps[-1][:23]
    # and a cycle right after re-reads the overlap window but publishes nothing again
    again = run_cycle_on_worker(stack)
    assert again["published"] == "0" and again["already_handled"] == "5000" and again["api_calls"] == "3", again
    assert len(outbound(stack.redis)) == 5000


def test_given_a_failure_on_the_second_page_when_cycles_run_then_no_change_is_lost_or_sent_twice(stack):
    # given 2,500 changes, and Salesforce failing the second page of the next query
    ids = stack.admin.seed("Contact", [{"LastName": f"C {n}", "Email": f"c{n}@acme.example"} for n in range(2500)])
    stack.start_worker(**CRM)
    stack.admin.add_fault("outage", path=r"^queryAll/01g", count=1)

    # when the cycle runs, it fails after the first page and keeps the watermark
    failed = run_cycle_on_worker(stack)
    assert failed["ok"] == "0" and "SERVER_UNAVAILABLE" in failed["error"], failed
    assert failed["published"] == "2000", failed
    assert watermark(stack.redis) == {}

    # then the next cycle picks everything up; nothing is lost and nothing is published twice
    ok = run_cycle_on_worker(stack)
    assert ok["ok"] == "1" and ok["published"] == "500" and ok["already_handled"] == "2000", ok
    events = outbound(stack.redis)
    assert len(events) == 2500 and sorted(e["data"]["contact_id"] for e in events) == sorted(ids)
    assert watermark(stack.redis) != {}


def test_given_salesforce_down_when_a_cycle_runs_then_it_fails_visibly_and_the_next_one_catches_up(stack):
    (jane,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"}])
    stack.start_worker(**CRM)
    fault = stack.admin.add_fault("outage")

    failed = run_cycle_on_worker(stack)

    assert failed["ok"] == "0" and failed["error"].startswith("SERVER_UNAVAILABLE"), failed
    assert watermark(stack.redis) == {} and outbound(stack.redis) == []
    stack.admin.delete_fault(fault)
    ok = run_cycle_on_worker(stack)
    assert ok["ok"] == "1" and ok["published"] == "1", ok
    assert [e["data"]["contact_id"] for e in outbound(stack.redis)] == [jane]
    assert totals(stack.redis) == {"failed": 1, "ok": 1}


# --- one at a time ------------------------------------------------------------------------------

def test_given_two_cycles_started_at_once_then_only_one_runs(stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"}])
    stack.admin.add_fault("latency", path=r"^queryAll", latency_ms=2000)  # the first holds the lock a while
    stack.start_worker(concurrency=2, **CRM)
    app = publisher_app(stack.redis_url)

    app.send_task(CRM_SYNC_CYCLE, queue=CONTROL_QUEUE)
    app.send_task(CRM_SYNC_CYCLE, queue=CONTROL_QUEUE)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(totals(stack.redis).values()) < 2:
        time.sleep(0.1)
    assert totals(stack.redis) == {"ok": 1, "locked_out": 1}
    assert len(outbound(stack.redis)) == 1


def test_given_a_dead_lock_holder_when_its_lock_expires_then_the_next_cycle_runs(stack):
    stale = CycleLock(stack.redis, WORKSPACE, ttl=1)
    assert stale.acquire()
    stale._stop.set()  # the holder "dies": no more renewals
    assert not CycleLock(stack.redis, WORKSPACE).acquire()
    time.sleep(1.2)
    fresh = CycleLock(stack.redis, WORKSPACE)
    assert fresh.acquire()
    fresh.release()


# --- beat, end to end ----------------------------------------------------------------------------

@pytest.mark.slow
def test_given_a_10_second_interval_when_a_contact_changes_then_unify_hears_within_20_seconds(stack):
    (jane,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"}])
    env = stack.env(crm_sync_interval=10, **CRM)
    stack.start_worker(crm_sync_interval=10, **CRM)
    beat = beat_process(env).start()
    stack.processes.append(beat)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not totals(stack.redis).get("ok"):
        time.sleep(0.2)
    assert totals(stack.redis).get("ok"), beat.output()[-3000:]
    stack.redis.delete(OUTBOUND_QUEUE)

    stack.admin.edit("Contact", jane, Email="jane.doe@acme.example")
    changed_at = time.monotonic()
    popped = None
    while popped is None and time.monotonic() - changed_at < 20:
        popped = stack.redis.brpop(OUTBOUND_QUEUE, timeout=1)

    assert popped is not None, "no event on unify.outbound within 20 s:\n" + beat.output()[-3000:]
    event = json.loads(popped[1])
    assert event["data"]["emails"] == ["jane.doe@acme.example"]
    assert time.monotonic() - changed_at <= 20


def test_given_a_one_hour_interval_when_beat_starts_then_a_crm_cycle_runs_within_seconds(stack):
    stack.start_worker(crm_sync_interval=3600, **CRM)
    beat = beat_process(stack.env(crm_sync_interval=3600, **CRM)).start()
    stack.processes.append(beat)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not totals(stack.redis).get("ok"):
        time.sleep(0.2)
    assert totals(stack.redis).get("ok"), beat.output()[-3000:]
    assert "DueAtStartScheduler" in beat.output()

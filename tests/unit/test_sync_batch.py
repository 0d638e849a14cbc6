"""sync_batch with in-memory stores and an in-memory org: what each event's outcome is, and what was written."""

from __future__ import annotations

import pytest

from schemas.codes import ErrorCode
from schemas.events import parse_event
from schemas.mappings import MappingConfig
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from tests.unit.fakes import FakeGateway, FakeIndex, FakeLedger, FakeLocks, FakeOwnWrites, FakeUsers
from workers.salesforce.errors import SalesforceError
from workers.sync.engine import CREATION_WAIT, SyncContext, sync_batch
from workers.sync.mappings import MappingProblem
from workers.sync.outcomes import DeadLetter, Retry, Skipped, Waiting, Written

WS = "ws_acme"


def context(gateway: FakeGateway | None = None, **overrides) -> SyncContext:
    fields = dict(gateway=gateway or FakeGateway(), mappings=MappingConfig(), workspace_id=WS, ledger=FakeLedger(),
                  index=FakeIndex(), locks=FakeLocks(), own_writes=FakeOwnWrites(), users=FakeUsers())
    fields.update(overrides)
    return SyncContext(**fields)


def events(*raw):
    return [parse_event(r) for r in raw]


def test_given_a_known_contact_when_an_email_is_synced_then_a_task_is_written_on_it_and_recorded_in_the_ledger():
    ctx = context()
    jane = ctx.gateway.add("Contact", Email="jane@acme.example", LastName="Doe")
    [event] = events(email_event(to="jane@acme.example"))
    [outcome] = sync_batch([event], ctx)
    assert isinstance(outcome, Written) and (outcome.sobject, outcome.contact_id) == ("Task", jane["Id"])
    [task] = ctx.gateway.of("Task")
    assert task["WhoId"] == jane["Id"] and task["Unify_Event_Id__c"] == event.id
    assert ctx.ledger.lookup(WS, [event.id])[event.id].record_id == task["Id"]


def test_given_an_org_with_enhanced_email_when_an_email_is_synced_then_it_becomes_an_email_message():
    ctx = context(FakeGateway(enhanced_email=True))
    ctx.gateway.add("Contact", Email="jane@acme.example", LastName="Doe")
    [outcome] = sync_batch(events(email_event(to="jane@acme.example")), ctx)
    assert isinstance(outcome, Written) and outcome.sobject == "EmailMessage"


def test_given_an_event_the_ledger_has_when_synced_again_then_a_duplicate_and_nothing_written_twice():
    ctx = context()
    ctx.gateway.add("Contact", Email="jane@acme.example", LastName="Doe")
    batch = events(email_event(to="jane@acme.example"))
    sync_batch(batch, ctx)
    [again] = sync_batch(batch, ctx)
    assert isinstance(again, Written) and again.duplicate
    assert len(ctx.gateway.of("Task")) == 1


def test_given_a_contact_the_index_knows_when_synced_then_no_lookup_is_made():
    ctx = context()
    jane = ctx.gateway.add("Contact", Email="jane@acme.example", LastName="Doe")
    ctx.index.put_contacts(WS, [jane], ["Email"])
    sync_batch(events(email_event(to="jane@acme.example", rep_user_id="005000000000001")), ctx)
    assert ("query", "Contact") not in ctx.gateway.calls


@pytest.mark.parametrize("waiting, wait", [(None, None), (Waiting(30, 100), Waiting(30, 100))])
def test_given_nobody_and_no_play_when_an_email_is_synced_then_skipped_no_contact_waiting_if_configured(waiting, wait):
    ctx = context(waiting=waiting)
    [outcome] = sync_batch(events(email_event(to="nobody@acme.example")), ctx)
    assert outcome == Skipped("no_contact", outcome.detail, wait=wait)
    assert ctx.gateway.of("Task") == [] and ctx.gateway.of("Contact") == []
    assert ctx.index.get_many(WS, ["nobody@acme.example"]) == {"nobody@acme.example": []}  # the miss is remembered


def test_given_a_sync_play_for_a_new_person_when_synced_then_the_contact_is_created_once_for_the_batch():
    ctx = context()
    batch = events(*[email_event(to="new@acme.example", play=SYNC_PLAY) for _ in range(3)])
    outcomes = sync_batch(batch, ctx)
    [contact] = ctx.gateway.of("Contact")
    assert all(isinstance(o, Written) and o.contact_id == contact["Id"] and o.contact_created for o in outcomes)
    assert len(ctx.gateway.of("Task")) == 3
    assert ctx.locks.held == {}  # released after the creation
    assert [record_id for record_id, _ in ctx.own_writes.recorded] == [contact["Id"]]  # not echoed by the CRM cycle


def test_given_another_worker_creating_the_person_when_synced_then_retried_shortly_without_a_write():
    ctx = context(locks=FakeLocks(held_by_others=["new@acme.example"]))
    [outcome] = sync_batch(events(email_event(to="new@acme.example", play=SYNC_PLAY)), ctx)
    assert isinstance(outcome, Retry) and outcome.error.code == ErrorCode.CONTACT_BEING_CREATED
    assert outcome.after == CREATION_WAIT and ctx.gateway.of("Contact") == []


@pytest.mark.parametrize("error, kind", [(SalesforceError("UNABLE_TO_LOCK_ROW", "locked"), Retry),
                                         (SalesforceError("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no"), DeadLetter)])
def test_given_salesforce_refuses_the_activity_when_synced_then_transient_retried_permanent_dead_lettered(error, kind):
    ctx = context(FakeGateway(refuse=lambda sobject, fields: error if sobject == "Task" else None))
    ctx.gateway.add("Contact", Email="jane@acme.example", LastName="Doe")
    [event] = events(email_event(to="jane@acme.example"))
    [outcome] = sync_batch([event], ctx)
    assert isinstance(outcome, kind)
    assert ctx.ledger.lookup(WS, [event.id]) == {} and ctx.ledger.pending(WS, [event.id]) == set()


def test_given_a_lookup_shared_by_the_batch_fails_when_synced_then_every_event_gets_the_same_verdict():
    ctx = context()
    ctx.gateway.fail_queries = SalesforceError("SERVER_UNAVAILABLE", "down", status=503)
    outcomes = sync_batch(events(email_event(to="a@acme.example"), email_event(to="b@acme.example")), ctx)
    assert [type(o) for o in outcomes] == [Retry, Retry] and outcomes[0] == outcomes[1]


def test_given_a_broken_contact_mapping_when_a_contact_update_is_synced_then_dead_lettered_as_invalid_mapping():
    problem = MappingProblem("Contact", "Title", "title", "not in this org")
    ctx = context(mapping_errors=(problem,))
    ctx.gateway.add("Contact", Email="jane@acme.example", LastName="Doe")
    [outcome] = sync_batch(events(contact_updated_event(emails=["jane@acme.example"], changes={"title": "CEO"})), ctx)
    assert isinstance(outcome, DeadLetter) and outcome.code == ErrorCode.INVALID_MAPPING


def test_given_events_of_another_workspace_when_synced_then_refused_as_a_callers_bug():
    with pytest.raises(ValueError, match="ws_other"):
        sync_batch(events(email_event(workspace_id="ws_other")), context())

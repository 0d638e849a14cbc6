"""A Task's owner (the rep) is asked of the org once per workspace, not by every worker process."""

from __future__ import annotations

import pytest

from events.contact_index import ContactIndex, CreationLocks
from events.ledger import Ledger
from events.rep_users import RepUsers
from schemas.events import parse_event
from schemas.mappings import MappingConfig
from tests.conftest import WORKSPACE
from tests.factories import email_event
from tests.integration.test_gateway_describes import gateway
from workers.sync.engine import SyncContext, _plan_activities, EventWork

pytestmark = pytest.mark.integration


def context(redis_client, redis_url, emulator) -> SyncContext:
    """What one pool process builds for the workspace (its own gateway and in-process caches)."""
    return SyncContext(gateway=gateway(redis_url, emulator), mappings=MappingConfig(), workspace_id=WORKSPACE,
                       ledger=Ledger(redis_client), index=ContactIndex(redis_client), locks=CreationLocks(redis_client),
                       users=RepUsers(redis_client))


def planned_owner(ctx: SyncContext, **event) -> tuple[str, str | None]:
    work = EventWork(parse_event(email_event(**event)))
    work.contact = {"Id": "003000000000001AAA"}
    [planned], _ = _plan_activities([work], ctx)
    return planned.sobject, planned.record.get("OwnerId")


def test_given_two_processes_when_each_writes_a_reps_task_then_the_org_is_asked_for_the_rep_once(
        redis_client, redis_url, emulator):
    riley = next(u["Id"] for u in emulator.admin.records("User") if u["Username"] == "riley@seller.example")
    first, second = context(redis_client, redis_url, emulator), context(redis_client, redis_url, emulator)
    first.gateway.describe("Task"), second.gateway.describe("Task")
    emulator.admin.reset_api_calls()

    assert planned_owner(first, origin="manual") == ("Task", riley)
    assert planned_owner(second, origin="manual") == ("Task", riley)
    assert emulator.admin.state()["api_calls_by_route"] == {"GET query": 1}


def test_given_emails_that_become_email_messages_when_planned_then_no_rep_is_looked_up(
        redis_client, redis_url, emulator):
    ctx = context(redis_client, redis_url, emulator)
    ctx.gateway.describe("Task"), ctx.gateway.is_createable("EmailMessage")
    emulator.admin.reset_api_calls()

    assert planned_owner(ctx, origin="automated")[0] == "EmailMessage"
    assert emulator.admin.api_calls() == 0


def test_given_a_rep_the_org_does_not_know_when_asked_again_within_the_hour_then_the_answer_is_kept(
        redis_client, redis_url, emulator):
    ctx = context(redis_client, redis_url, emulator)
    ctx.gateway.describe("Task")
    emulator.admin.reset_api_calls()

    assert planned_owner(ctx, origin="manual", rep_email="new.rep@seller.example") == ("Task", None)
    other = context(redis_client, redis_url, emulator)
    other.gateway.describe("Task")
    emulator.admin.reset_api_calls()
    assert planned_owner(other, origin="manual", rep_email="new.rep@seller.example") == ("Task", None)
    assert emulator.admin.api_calls() == 0


def test_given_a_batch_with_a_new_address_and_a_reps_task_when_resolved_then_contact_and_rep_come_in_one_call(
        redis_client, redis_url, emulator):
    from workers.sync.engine import _resolve

    riley = next(u["Id"] for u in emulator.admin.records("User") if u["Username"] == "riley@seller.example")
    jane = emulator.admin.seed("Contact", {"LastName": "Doe", "Email": "jane.new@acme.example"})[0]
    ctx = context(redis_client, redis_url, emulator)
    ctx.gateway.describe("Task")
    emulator.admin.reset_api_calls()
    work = EventWork(parse_event(email_event(origin="manual", to="jane.new@acme.example")))

    _resolve([work], ctx)
    [planned], _ = _plan_activities([work], ctx)

    assert work.contact_id == jane and planned.record.get("OwnerId") == riley
    assert emulator.admin.state()["api_calls_by_route"] == {"POST composite": 1}

"""sfsync's own Contact writes: recorded as exact (Id, SystemModstamp) pairs, at one query per batch that wrote contacts.

Real Redis, the sync engine against the emulator over HTTP; the gateway only notes the SOQL it sends.
"""

from __future__ import annotations

import time

import pytest

from events.contact_index import ContactIndex, CreationLocks
from events.keys import key
from events.ledger import Ledger
from events.outbound import HandledChange, OutboundQueue
from events.changes import parse_modstamp
from events.own_writes import OwnWrites
from schemas.events import parse_event
from schemas.settings import load_settings
from tests.conftest import TEST_MAPPINGS, WORKSPACE
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from workers.local.stack import stack_env
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.engine import SyncContext, sync_batch
from workers.sync.mappings import load_mappings
from workers.sync.outcomes import Written

pytestmark = pytest.mark.integration

READ_BACK = "SELECT Id, SystemModstamp FROM Contact WHERE Id IN"


class NotingGateway(SalesforceGateway):
    """The real gateway to the emulator, noting each SOQL query it sends."""

    def query_all(self, soql):
        self.queries = [*getattr(self, "queries", []), soql]
        return super().query_all(soql)


def context(redis_url, redis_client, emulator) -> SyncContext:
    settings = load_settings(stack_env(redis_url=redis_url, instance_url=emulator.url, access_token=emulator.token,
                                       workspace_id=WORKSPACE))
    return SyncContext(gateway=NotingGateway.from_settings(settings), mappings=load_mappings(TEST_MAPPINGS),
                       workspace_id=WORKSPACE, ledger=Ledger(redis_client), index=ContactIndex(redis_client),
                       locks=CreationLocks(redis_client), own_writes=OwnWrites(redis_client))


def read_backs(ctx: SyncContext) -> list[str]:
    return [q for q in getattr(ctx.gateway, "queries", []) if q.startswith(READ_BACK)]


def stamp_of(emulator, contact_id: str) -> int:
    return parse_modstamp(emulator.admin.get("Contact", contact_id)["SystemModstamp"])


def mark_read_by_a_cycle(redis_client, emulator, contact_ids) -> None:
    """What a CRM cycle leaves behind once it has read these contacts' current state."""
    OutboundQueue(redis_client).publish_once(
        WORKSPACE, [HandledChange(cid, stamp_of(emulator, cid), None) for cid in contact_ids])


def test_given_a_batch_creating_and_filling_contacts_then_one_read_back_records_each_exact_stamp(
        redis_url, redis_client, emulator):
    # given two contacts a cycle has already read, and a batch that fills both and creates two more
    known = emulator.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"},
                                            {"LastName": "Roe", "Email": "rick@acme.example"}])
    mark_read_by_a_cycle(redis_client, emulator, known)
    ctx = context(redis_url, redis_client, emulator)
    events = [contact_updated_event(emails=["jane@acme.example"], changes={"sequence_status": "Completed"}),
              contact_updated_event(emails=["rick@acme.example"], changes={"sequence_status": "In Progress - Started"}),
              email_event(to="new.one@acme.example", play=SYNC_PLAY),
              email_event(to="new.two@acme.example", play=SYNC_PLAY)]
    calls_before = emulator.admin.api_calls()

    outcomes = sync_batch([parse_event(e) for e in events], ctx)

    # then every contact sfsync wrote is recorded with the stamp Salesforce gave it, for one query
    assert all(isinstance(o, Written) for o in outcomes), outcomes
    written = sorted({o.contact_id for o in outcomes})
    assert len(written) == 4 and set(known) <= set(written)
    assert len(read_backs(ctx)) == 1
    assert ctx.gateway.calls == emulator.admin.api_calls() - calls_before
    own = OwnWrites(redis_client)
    assert own.recorded(WORKSPACE, [(cid, stamp_of(emulator, cid)) for cid in written]) == [True] * 4
    # and a later stamp of the same contact (a person's edit, whoever is signed in) is not sfsync's
    emulator.admin.edit("Contact", known[0], as_user=emulator.admin.state()["api_user_id"], Title="CRO")
    assert own.recorded(WORKSPACE, [(known[0], stamp_of(emulator, known[0]))]) == [False]


def test_given_an_email_only_batch_then_no_read_back_is_paid(redis_url, redis_client, emulator):
    emulator.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"}])
    ctx = context(redis_url, redis_client, emulator)

    outcomes = sync_batch([parse_event(email_event(to="jane@acme.example")) for _ in range(3)], ctx)

    assert all(isinstance(o, Written) for o in outcomes), outcomes
    assert read_backs(ctx) == []
    assert redis_client.zcard(key(WORKSPACE, "crm", "own")) == 0


def test_given_a_person_edit_no_cycle_has_read_when_sfsync_fills_the_contact_then_the_fill_is_not_recorded(
        redis_url, redis_client, emulator):
    # given Jane, read by a cycle, then edited by a person since
    (jane,) = emulator.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example"}])
    mark_read_by_a_cycle(redis_client, emulator, [jane])
    emulator.admin.edit("Contact", jane, Title="CRO")
    ctx = context(redis_url, redis_client, emulator)

    # when sfsync fills a field on her
    fill = contact_updated_event(emails=["jane@acme.example"], changes={"sequence_status": "Completed"})
    (outcome,) = sync_batch([parse_event(fill)], ctx)

    # then the fill is written but not taken for sfsync's own: the next cycle publishes her, edit included
    assert isinstance(outcome, Written) and outcome.contact_id == jane
    assert OwnWrites(redis_client).recorded(WORKSPACE, [(jane, stamp_of(emulator, jane))]) == [False]
    assert read_backs(ctx) == []  # nothing of the batch to record: no read-back either


def test_given_recorded_writes_then_the_cycle_floor_and_the_retention_drop_old_ones(redis_client):
    own = OwnWrites(redis_client, retention=60)
    now_ms = int(time.time() * 1000)
    own.record(WORKSPACE, [("003000000000001AAA", now_ms - 120_000)], now_ms=now_ms - 120_000)
    own.record(WORKSPACE, [("003000000000002AAA", now_ms - 1_000), ("003000000000003AAA", now_ms)], now_ms=now_ms)
    # the first is older than the retention: gone; the 15-character form of an Id is the same contact
    assert own.recorded(WORKSPACE, [("003000000000001AAA", now_ms - 120_000), ("003000000000002", now_ms - 1_000),
                                    ("003000000000003AAA", now_ms)]) == [False, True, True]
    # a cycle whose next query starts at `now` drops what it can never read again, and says so
    own.forget_before(WORKSPACE, now_ms)
    assert own.recorded(WORKSPACE, [("003000000000002AAA", now_ms - 1_000),
                                    ("003000000000003AAA", now_ms)]) == [False, True]
    # so a state stamped before that floor counts as read, one after it only when handled or own
    assert own.accounted_for(WORKSPACE, [("003000000000009AAA", now_ms - 5),
                                         ("003000000000009AAA", now_ms + 5),
                                         ("003000000000003AAA", now_ms)]) == [True, False, True]

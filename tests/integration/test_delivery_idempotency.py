"""An org without the Unify_Event_Id__c field: a pending (crashed mid-write) event is looked up, not rewritten."""

from __future__ import annotations

import pytest

from events.contact_index import ContactIndex, CreationLocks
from events.keys import key
from events.ledger import Ledger
from schemas.events import parse_event
from schemas.settings import load_settings
from tests.conftest import TEST_MAPPINGS, WORKSPACE
from tests.factories import email_event
from workers.local.stack import stack_env
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.engine import EVENT_ID_FIELD, SyncContext, sync_batch
from workers.sync.mappings import load_mappings
from workers.sync.outcomes import Written

pytestmark = pytest.mark.integration


class GatewayWithoutEventIdField(SalesforceGateway):
    """The real gateway to the emulator, but describe says the org lacks the idempotency field."""

    def fields(self, sobject):
        return {name: f for name, f in super().fields(sobject).items() if name != EVENT_ID_FIELD}


def context(redis_url, redis_client, emulator) -> SyncContext:
    settings = load_settings(stack_env(redis_url=redis_url, instance_url=emulator.url, access_token=emulator.token,
                                       workspace_id=WORKSPACE))
    gateway = GatewayWithoutEventIdField.from_settings(settings)
    return SyncContext(gateway=gateway, mappings=load_mappings(TEST_MAPPINGS), workspace_id=WORKSPACE,
                       ledger=Ledger(redis_client), index=ContactIndex(redis_client),
                       locks=CreationLocks(redis_client))


def test_given_a_write_not_recorded_when_the_event_comes_back_pending_then_found_by_message_id(
        redis_url, redis_client, emulator):
    emulator.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    ctx = context(redis_url, redis_client, emulator)
    event = parse_event(email_event())
    [first] = sync_batch([event], ctx)
    assert isinstance(first, Written) and not first.duplicate
    assert EVENT_ID_FIELD not in emulator.admin.get("EmailMessage", first.record_id) or \
        emulator.admin.get("EmailMessage", first.record_id).get(EVENT_ID_FIELD) is None
    # the crash window: Salesforce wrote it, the ledger never heard
    redis_client.delete(key(WORKSPACE, "ledger", event.id))
    redis_client.set(key(WORKSPACE, "pending", event.id), "1")

    [again] = sync_batch([event], ctx)

    assert isinstance(again, Written) and again.duplicate and again.record_id == first.record_id
    assert len(emulator.admin.records("EmailMessage")) == 1
    assert Ledger(redis_client).lookup(WORKSPACE, [event.id])[event.id].record_id == first.record_id
    assert Ledger(redis_client).pending(WORKSPACE, [event.id]) == set()

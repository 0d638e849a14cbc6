"""The gateway's describes: the objects an email batch needs come in one composite call, then from the caches."""

from __future__ import annotations

import pytest

from schemas.settings import load_settings
from tests.conftest import WORKSPACE
from workers.local.stack import stack_env
from workers.salesforce.gateway import SalesforceGateway, SharedDescribes

pytestmark = pytest.mark.integration


def gateway(redis_url, emulator, shared=None) -> SalesforceGateway:
    settings = load_settings(stack_env(redis_url=redis_url, instance_url=emulator.url, access_token=emulator.token,
                                       workspace_id=WORKSPACE))
    made = SalesforceGateway.from_settings(settings)
    made.shared = shared
    return made


def test_given_a_new_gateway_when_task_and_email_message_are_described_then_one_api_call_reads_both(
        redis_url, emulator):
    sf = gateway(redis_url, emulator)
    emulator.admin.reset_api_calls()

    task_fields = sf.fields("Task")
    creatable = sf.is_createable("EmailMessage")
    sf.fields("Task")

    assert "Subject" in task_fields and creatable is True
    assert emulator.admin.api_calls() == 1 and sf.calls == 1


def test_given_an_org_without_enhanced_email_when_described_together_then_email_message_is_none(redis_url, emulator):
    emulator.admin.set_features(enhanced_email=False)
    sf = gateway(redis_url, emulator)

    assert sf.describe("EmailMessage") is None and not sf.is_createable("EmailMessage")
    assert sf.fields("Task") and sf.calls == 1


def test_given_describes_shared_in_redis_when_another_process_describes_then_it_makes_no_call(
        redis_url, redis_client, emulator):
    shared = SharedDescribes(redis_client, WORKSPACE)
    gateway(redis_url, emulator, shared).fields("EmailMessage")
    emulator.admin.reset_api_calls()

    other = gateway(redis_url, emulator, SharedDescribes(redis_client, WORKSPACE))

    assert other.fields("Task")["Subject"] and other.is_createable("EmailMessage")
    assert emulator.admin.api_calls() == 0 and other.calls == 0


def test_given_contact_needed_after_the_email_objects_when_described_then_one_more_call_for_it_alone(
        redis_url, emulator):
    sf = gateway(redis_url, emulator)
    sf.fields("Task")
    emulator.admin.reset_api_calls()

    contact = sf.fields("Contact")

    assert "LastName" in contact and emulator.admin.api_calls() == 1

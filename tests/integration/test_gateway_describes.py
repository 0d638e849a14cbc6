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


def test_given_two_queries_when_asked_together_then_one_api_call_answers_both_as_query_in_would(
        redis_url, emulator):
    emulator.admin.seed("Contact", [{"LastName": f"P{i}", "Email": f"p{i}@acme.example"} for i in range(3)])
    sf = gateway(redis_url, emulator)
    contacts = "SELECT Id, Email FROM Contact WHERE Email IN {values}"
    users = "SELECT Id, Email FROM User WHERE Email IN {values}"
    addresses, reps = ["p0@acme.example", "p2@acme.example", "nobody@acme.example"], ["riley@seller.example"]
    emulator.admin.reset_api_calls()

    together = sf.query_in_together([(contacts, addresses), (users, reps)])

    assert emulator.admin.api_calls() == 1
    assert together == [sf.query_in(contacts, addresses), sf.query_in(users, reps)]
    assert sorted(c["Email"] for c in together[0]) == ["p0@acme.example", "p2@acme.example"]


def test_given_a_companion_query_that_fails_when_asked_together_then_it_is_none_and_the_first_is_answered(
        redis_url, emulator):
    from workers.salesforce.errors import SalesforceError

    sf = gateway(redis_url, emulator)
    good, bad = "SELECT Id FROM Contact WHERE Email IN {values}", "SELECT Nope__c FROM User WHERE Email IN {values}"

    assert sf.query_in_together([(good, ["a@b.example"]), (bad, ["c@d.example"])]) == [[], None]
    with pytest.raises(SalesforceError) as raised:
        sf.query_in_together([(bad, ["c@d.example"]), (good, ["a@b.example"])])
    assert raised.value.code == "INVALID_FIELD"


def test_given_queries_needing_more_than_five_subrequests_when_asked_together_then_they_go_one_by_one(
        redis_url, emulator):
    sf = gateway(redis_url, emulator)
    many = [f"person{i:05d}.with.a.long.address@some-company.example" for i in range(1500)]  # several IN chunks
    emulator.admin.reset_api_calls()

    answer = sf.query_in_together([("SELECT Id FROM Contact WHERE Email IN {values}", many),
                                   ("SELECT Id FROM User WHERE Email IN {values}", ["riley@seller.example"])])

    assert answer[0] == [] and len(answer[1]) == 1 and emulator.admin.api_calls() >= 6

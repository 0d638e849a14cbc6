"""Emails another integration already logged (same Message-ID on an EmailMessage) are not written twice:
through Redis, a real worker and the emulator, with the calls the check costs."""

from __future__ import annotations

import pytest

from tests.conftest import records_of
from tests.factories import email_event

pytestmark = pytest.mark.integration


def seed_jane(admin) -> str:
    return admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])[0]


def logged_by_a_mail_client(admin, event: dict, contact: str) -> str:
    """An EmailMessage a rep's mail client integration logged for the same email (its Message-ID, any case)."""
    return admin.seed("EmailMessage", [{"Subject": event["data"]["subject"], "Status": "3",
                                        "MessageIdentifier": event["data"]["message_id"].upper(),
                                        "ToIds": [contact]}])[0]


def test_given_an_email_already_logged_when_synced_then_skipped_as_already_logged_and_the_rest_written(stack):
    jane = seed_jane(stack.admin)
    logged = email_event(subject="Logged by Outlook")
    other = email_event(subject="Only in Unify")
    existing = logged_by_a_mail_client(stack.admin, logged, jane)
    stack.admin.seed("Contact", [{"LastName": "Seller", "Email": "sam@acme.example"}])
    stack.start_worker()
    warm = email_event(to="sam@acme.example")  # the worker's login and describes behind it, Jane still unknown
    stack.publish([warm])
    stack.wait_outcomes([warm["id"]])
    stack.admin.reset_api_calls()

    stack.publish([logged, other])  # one message (a bundle), so one batch
    out = stack.wait_outcomes([e["id"] for e in (logged, other)])

    assert out[logged["id"]]["outcome"] == "skipped_already_logged"
    assert out[logged["id"]]["reason"] == "already_logged"
    assert out[other["id"]]["outcome"] == "written"
    messages = stack.admin.records("EmailMessage", MessageIdentifier=logged["data"]["message_id"])
    assert [m["Id"] for m in messages] == [existing]
    assert records_of(stack.admin, "EmailMessage", [other["id"]]) == {other["id"]: 1}
    # asked in the batch's one lookup call (contacts and Message-IDs together): no call of its own
    assert stack.admin.state()["api_calls_by_route"] == {"POST composite": 1, "POST composite/sobjects": 1}


def test_given_a_reply_already_logged_when_synced_then_skipped_and_no_relation_is_added(stack):
    jane = seed_jane(stack.admin)
    reply = email_event(event_type="email.replied", subject="Re: hello")
    existing = logged_by_a_mail_client(stack.admin, reply, jane)
    stack.start_worker()

    stack.publish([reply])

    assert stack.wait_outcomes([reply["id"]])[reply["id"]]["outcome"] == "skipped_already_logged"
    assert [m["Id"] for m in stack.admin.records("EmailMessage")] == [existing]
    assert len(stack.admin.records("EmailMessageRelation")) == 1  # the mail client's own


def test_given_the_check_turned_off_when_an_email_is_already_logged_then_it_is_written_all_the_same(stack):
    jane = seed_jane(stack.admin)
    event = email_event()
    logged_by_a_mail_client(stack.admin, event, jane)
    stack.start_worker(skip_already_logged="false")

    stack.publish([event])

    assert stack.wait_outcomes([event["id"]])[event["id"]]["outcome"] == "written"
    assert len(stack.admin.records("EmailMessage")) == 2


def test_given_contacts_already_known_when_emails_are_written_then_the_check_is_one_query_for_the_batch(stack):
    seed_jane(stack.admin)
    stack.start_worker(batch_size=20, flush_interval=1.0)
    warm = email_event(origin="manual")
    stack.publish([warm])
    stack.wait_outcomes([warm["id"]])  # Jane is in the contact index now: no lookup call from here on
    stack.admin.reset_api_calls()

    batch = [email_event(subject=f"step {n}") for n in range(10)] + [email_event(origin="manual")]
    stack.publish(batch)
    out = stack.wait_outcomes([e["id"] for e in batch])

    assert {o["outcome"] for o in out.values()} == {"written"}
    # one check and one write per batch (one batch, unless a loaded machine splits the burst in two)
    calls = stack.admin.state()["api_calls_by_route"]
    assert set(calls) == {"GET query", "POST composite/sobjects"} and calls["GET query"] == \
        calls["POST composite/sobjects"] <= 2, calls


def test_given_only_tasks_when_written_then_no_message_id_is_looked_up(stack):
    seed_jane(stack.admin)
    stack.start_worker()
    warm = email_event(origin="manual")
    stack.publish([warm])
    stack.wait_outcomes([warm["id"]])
    stack.admin.reset_api_calls()

    manual = [email_event(origin="manual") for _ in range(3)]
    stack.publish(manual)
    stack.wait_outcomes([e["id"] for e in manual])

    assert stack.admin.state()["api_calls_by_route"] == {"POST composite/sobjects": 1}


def test_given_an_email_sfsync_wrote_whose_ledger_entry_is_gone_when_delivered_again_then_it_is_that_write(stack):
    """Its Message-ID is in the org, but on sfsync's own EmailMessage for this very event: not `already_logged`."""
    seed_jane(stack.admin)
    stack.start_worker()
    event = email_event()
    stack.publish([event])
    first = stack.wait_outcomes([event["id"]])[event["id"]]
    for name in stack.redis.keys("sfsync:{ws_acme}:ledger:*"):  # as after the ledger's 90 days
        stack.redis.delete(name)
    mark = stack.outcomes.mark("ws_acme")

    stack.publish([event])
    again = stack.outcomes.wait_final("ws_acme", {event["id"]}, 30, since=mark)[event["id"]]

    assert (first["outcome"], again["outcome"]) == ("written", "duplicate")
    assert again["record_id"] == first["record_id"]
    assert records_of(stack.admin, "EmailMessage", [event["id"]]) == {event["id"]: 1}

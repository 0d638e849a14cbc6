"""Events go from Redis through a real worker process to the emulator over HTTP (issue #3)."""

from __future__ import annotations

import json

import pytest

from events.deadletter import DeadLetterStore
from events.publish import publisher_app
from tests.factories import email_event

pytestmark = pytest.mark.integration


def seed_contacts(admin):
    return admin.seed("Contact", [
        {"FirstName": "Jane", "LastName": "Doe", "Email": "Jane.Doe@Acme.example"},
        {"FirstName": "Omar", "LastName": "Brien", "Email": "omar@acme.example",
         "Secondary_Email__c": "o'brien@home.example"},
    ])


def test_given_known_contacts_when_emails_published_then_task_and_email_message_written(stack):
    jane, omar = seed_contacts(stack.admin)
    stack.start_worker()
    manual = email_event(origin="manual", subject="Following up by hand")
    automated = email_event(origin="automated", subject="Sequence step 2")
    secondary = email_event(to="O'Brien@Home.example", person_emails=[], subject="To the secondary address")
    stranger = email_event(to="nobody@unknown.example", subject="To a stranger")

    stack.publish([manual, automated, secondary, stranger])
    outcomes = stack.wait_outcomes([e["id"] for e in (manual, automated, secondary, stranger)])

    assert outcomes[manual["id"]]["sobject"] == "Task"
    assert outcomes[automated["id"]]["sobject"] == "EmailMessage"
    assert outcomes[secondary["id"]]["contact_id"] == omar
    assert outcomes[stranger["id"]]["outcome"] == "skipped_no_contact"
    tasks = stack.admin.records("Task")
    mine = [t for t in tasks if t["Id"] == outcomes[manual["id"]]["record_id"]]
    assert mine and mine[0]["WhoId"] == jane and mine[0]["TaskSubtype"] == "Email"
    messages = stack.admin.records("EmailMessage")
    assert sorted(m["Subject"] for m in messages) == ["Sequence step 2", "To the secondary address"]


def test_given_bad_messages_on_the_queue_when_consumed_then_dead_lettered_and_next_event_written(stack):
    seed_contacts(stack.admin)
    stack.start_worker()
    app = publisher_app(stack.redis_url)
    app.send_task("sfsync.email.sent", args=["{not json"], queue="email.sent", routing_key="email.sent")
    app.send_task("sfsync.email.sent", args=[{"id": "evt_bad_type", "type": "email.bounced", "version": 1}],
                  queue="email.sent", routing_key="email.sent")
    good = email_event()
    stack.publish([good])

    outcome = stack.wait_outcomes([good["id"]])[good["id"]]

    assert outcome["outcome"] == "written"
    codes = sorted(r.error_code for r in DeadLetterStore(stack.redis).iter_all())
    assert codes == ["INVALID_JSON", "UNKNOWN_EVENT_TYPE"]


def test_given_a_bundle_from_another_language_when_one_element_is_bad_then_the_rest_are_written(stack):
    seed_contacts(stack.admin)
    stack.start_worker()
    good = [email_event() for _ in range(3)]
    bad = {**email_event(), "type": "email.bounced"}
    # a non-Python client may send args[0] as a JSON string holding an array of events
    publisher_app(stack.redis_url).send_task("sfsync.email.sent", args=[json.dumps([good[0], bad, *good[1:]])],
                                             queue="email.sent", exchange="email.sent", routing_key="email.sent")

    outcomes = stack.wait_outcomes([e["id"] for e in good])

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert [r.error_code for r in DeadLetterStore(stack.redis).iter_all()] == ["UNKNOWN_EVENT_TYPE"]

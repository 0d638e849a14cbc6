"""A batch mixing every kind of event is written in few collection calls that Salesforce accepts.

Salesforce processes a composite/sobjects request in one chunk per run of same-type records
and refuses a request of more than 10 chunks, so records must go grouped by object type.
"""

from __future__ import annotations

import itertools
import json

import pytest

from events.deadletter import DeadLetterStore
from schemas.settings import load_settings
from tests.conftest import WORKSPACE
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from workers.local.stack import stack_env
from workers.salesforce.gateway import SalesforceGateway

pytestmark = pytest.mark.integration

KNOWN_CONTACTS = 40
KINDS = ("manual", "automated", "reply", "update", "unknown", "new person")


def type_runs(request_body: bytes) -> list[str]:
    """The chunks Salesforce processes a collection request in: one per run of the same type."""
    records = json.loads(request_body)["records"]
    return [sobject for sobject, _ in itertools.groupby(r["attributes"]["type"] for r in records)]


def collection_requests(gateway: SalesforceGateway) -> list:
    """The composite/sobjects requests the gateway sends from now on, as they went over HTTP."""
    sent = []

    def keep(response, *args, **kwargs):
        if "/composite/sobjects" in response.request.url:
            sent.append(response.request)
        return response

    gateway.sf.session.hooks["response"].append(keep)
    return sent


def test_given_12_records_alternating_task_and_email_message_when_created_then_one_call_of_2_type_runs(
        redis_url, emulator):
    [contact] = emulator.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    gateway = SalesforceGateway.from_settings(load_settings(stack_env(
        redis_url=redis_url, instance_url=emulator.url, access_token=emulator.token, workspace_id=WORKSPACE)))
    sent = collection_requests(gateway)
    records = [("Task", {"Subject": f"record {n}", "WhoId": contact, "Status": "Completed"}) if n % 2 == 0
               else ("EmailMessage", {"Subject": f"record {n}", "Status": "3", "TextBody": "hello"})
               for n in range(12)]

    results = gateway.create(records)

    assert len(sent) == 1
    assert type_runs(sent[0].body) == ["Task", "EmailMessage"]
    assert all(r.success for r in results), [r.error for r in results if not r.success]
    for (sobject, fields), result in zip(records, results):
        assert emulator.admin.get(sobject, result.id)["Subject"] == fields["Subject"]


def mixed_events(known: list[str]) -> tuple[list[dict], dict[str, str]]:
    """200 events cycling through every kind, each aimed at its own kind of person; event id -> kind."""
    events, kinds = [], {}
    updated = iter(range(KNOWN_CONTACTS))  # each contact.updated for its own contact: one PATCH per record
    for n in range(200):
        kind = KINDS[n % len(KINDS)]
        person = known[n % KNOWN_CONTACTS]
        if kind == "manual":
            event = email_event(to=person, origin="manual", subject=f"mixed {n}")
        elif kind == "automated":
            event = email_event(to=person, origin="automated", subject=f"mixed {n}")
        elif kind == "reply":
            event = email_event(to=person, event_type="email.replied", subject=f"Re: mixed {n}")
        elif kind == "update":
            event = contact_updated_event(emails=[known[next(updated)]], changes={"title": f"Title {n}"},
                                          title=f"Title {n}")
        elif kind == "unknown":
            event = email_event(to=f"stranger{n}@nowhere.example", subject=f"mixed {n}")
        else:
            event = email_event(to=f"new{n}@startup.example", play=SYNC_PLAY, last_name=f"New {n}",
                                origin="manual" if n % 4 == 1 else "automated", subject=f"mixed {n}")
        events.append(event)
        kinds[event["id"]] = kind
    return events, kinds


EXPECTED = {  # kind -> (outcome, sobject, contact created)
    "manual": ("written", "Task", "0"),
    "automated": ("written", "EmailMessage", "0"),
    "reply": ("written", "EmailMessage", "0"),
    "update": ("written", "Contact", "0"),
    "unknown": ("skipped_no_contact", None, None),
}


def test_given_200_interleaved_events_of_every_kind_when_synced_then_one_record_each_in_few_collection_calls(
        stack):
    emails = [f"known{n}@acme.example" for n in range(KNOWN_CONTACTS)]
    known = dict(zip(emails, stack.admin.seed("Contact", [{"LastName": f"Known {n}", "Email": e}
                                                          for n, e in enumerate(emails)])))
    events, kinds = mixed_events(emails)
    stack.start_worker(flush_interval=3.0, batch_size=200)
    # all published at once to an idle worker: a batch's first message starts its flush timer,
    # and the rest arrive well within it, so the whole workspace is synced as one batch
    stack.publish(events)

    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=120)

    for event in events:
        outcome, kind = outcomes[event["id"]], kinds[event["id"]]
        if kind == "new person":
            sobject = "Task" if event["data"]["origin"] == "manual" else "EmailMessage"
            assert (outcome["outcome"], outcome["sobject"], outcome["contact_created"]) == ("written", sobject, "1")
        else:
            want_outcome, want_sobject, want_created = EXPECTED[kind]
            assert outcome["outcome"] == want_outcome, (kind, outcome)
            assert outcome.get("sobject") == want_sobject and outcome.get("contact_created") == want_created
    activities = [(outcomes[e["id"]]["sobject"], outcomes[e["id"]]["record_id"], e) for e in events
                  if outcomes[e["id"]].get("sobject") in ("Task", "EmailMessage")]
    assert len({record_id for _, record_id, _ in activities}) == len(activities)
    for sobject, record_id, event in activities:
        assert event["data"]["subject"] in stack.admin.get(sobject, record_id)["Subject"]
    for event in events:
        if kinds[event["id"]] in ("manual", "automated", "reply", "update"):
            assert outcomes[event["id"]]["contact_id"] == known[event["data"]["person"]["emails"][0]]
    logged_email_messages = sum(1 for s, _, _ in activities if s == "EmailMessage")
    assert len(stack.admin.records("EmailMessage")) == logged_email_messages
    updates = [e for e in events if kinds[e["id"]] == "update"]
    assert all(stack.admin.get("Contact", known[e["data"]["person"]["emails"][0]])["Title"]
               == e["data"]["changes"]["title"] for e in updates)
    new_people = sum(1 for k in kinds.values() if k == "new person")
    assert len(stack.admin.records("Contact", IsDeleted=False)) == KNOWN_CONTACTS + new_people
    assert list(DeadLetterStore(stack.redis).iter_all()) == []
    calls = stack.admin.state()["api_calls_by_route"]
    # one batch for the workspace's three queues: the new contacts, then every Task and EmailMessage
    # (emails sent and replies together), then the replies' sender relations; and one update
    assert calls.get("POST composite/sobjects") == 3, calls
    assert calls.get("PATCH composite/sobjects") == 1, calls

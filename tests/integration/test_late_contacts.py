"""Late contacts, through Redis, real workers and the emulator: an email sent before its person was in
Salesforce waits, and is written once the person appears — in order, once, for no API call while it waits."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from tests.conftest import WORKSPACE, records_of, wait_until
from tests.factories import SYNC_PLAY, email_event
from tests.integration.test_crm_cycle import run_cycle_on_worker
from workers.cli import main as cli

pytestmark = pytest.mark.integration

STRANGER = "nia@startup.example"


def outcomes_of(stack, event_id: str) -> list[str]:
    """Every outcome the event had, oldest first."""
    return [e["outcome"] for e in reversed(stack.recent_outcomes(count=10_000)) if e.get("event_id") == event_id]


def wait_written_late(stack, event_ids, timeout: float = 60.0) -> dict[str, dict]:
    wanted = set(event_ids)

    def latest():
        found = stack.outcomes.for_events(WORKSPACE, wanted)
        return found if all(found.get(e, {}).get("outcome") == "written_late" for e in wanted) else None

    return wait_until(latest, timeout, "every email written late", stack.processes[0] if stack.processes else None)


def late(stack, *args, **env) -> dict | list:
    result = CliRunner().invoke(cli, ["late", *args, "--workspace", WORKSPACE, "--json"], env=stack.env(**env),
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def sent(minutes_ago: int) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=minutes_ago)


# --- the contact appears in Salesforce ------------------------------------------------------------

def test_given_emails_to_someone_unknown_when_a_person_creates_the_contact_then_the_next_cycle_writes_them(stack):
    # given a worker (whose first cycle sets the watermark) and three emails to someone nobody knows yet
    stack.start_worker()
    run_cycle_on_worker(stack)
    emails = [email_event(to=STRANGER, subject=f"step {n}", sent_at=sent(30 - n),
                          origin="manual" if n == 1 else "automated") for n in range(3)]
    stack.publish(emails)
    skipped = stack.wait_outcomes([e["id"] for e in emails])
    assert {o["outcome"] for o in skipped.values()} == {"skipped_no_contact"}
    assert all(o["waiting_until"] for o in skipped.values())
    assert late(stack, "count")["waiting"] == 3

    # when a rep creates her Contact in Salesforce and the CRM cycle runs
    (nia,) = stack.admin.seed("Contact", [{"FirstName": "Nia", "LastName": "Park", "Email": "Nia@Startup.example"}])
    cycle = run_cycle_on_worker(stack)

    # then the history so far is written to her, each email once, in the order sent
    assert cycle["late_released"] == "3", cycle
    done = wait_written_late(stack, [e["id"] for e in emails])
    assert {o["contact_id"] for o in done.values()} == {nia}
    ids = [done[e["id"]]["record_id"] for e in emails]
    assert [done[e["id"]]["sobject"] for e in emails] == ["EmailMessage", "Task", "EmailMessage"]
    assert records_of(stack.admin, "EmailMessage", [emails[0]["id"], emails[2]["id"]]) == {
        emails[0]["id"]: 1, emails[2]["id"]: 1}
    # released in the order sent; one collection call writes each object's records in that order, and the
    # timeline shows each at the moment it was sent
    first, second = (stack.admin.get("EmailMessage", ids[n]) for n in (0, 2))
    assert first["CreatedDate"] < second["CreatedDate"]
    assert [first["MessageDate"][:19], second["MessageDate"][:19]] == [
        emails[0]["data"]["sent_at"][:19], emails[2]["data"]["sent_at"][:19]]
    assert stack.admin.get("Task", ids[1])["ActivityDate"] == emails[1]["data"]["sent_at"][:10]
    counted = late(stack, "count")
    assert (counted["waiting"], counted["released"]) == (0, 3)


def test_given_an_email_written_late_when_it_is_delivered_again_then_nothing_more_is_written(stack):
    stack.start_worker()
    run_cycle_on_worker(stack)
    email = email_event(to=STRANGER)
    stack.publish([email])
    stack.wait_outcomes([email["id"]])
    stack.admin.seed("Contact", [{"LastName": "Park", "Email": STRANGER}])
    run_cycle_on_worker(stack)
    wait_written_late(stack, [email["id"]])

    # a redelivery, a replay and another cycle reading the same contact
    stack.publish([email, email])
    wait_until(lambda: len(outcomes_of(stack, email["id"])) >= 4, what="the two copies settled")
    run_cycle_on_worker(stack)

    assert records_of(stack.admin, "EmailMessage", [email["id"]]) == {email["id"]: 1}
    assert outcomes_of(stack, email["id"])[:2] == ["skipped_no_contact", "written_late"]
    assert set(outcomes_of(stack, email["id"])[2:]) <= {"duplicate", "skipped_duplicate_delivery"}
    assert late(stack, "count")["waiting"] == 0


def test_given_a_waiting_email_when_a_contact_address_is_corrected_to_it_then_it_is_written(stack):
    (jane,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@old-acme.example"}])
    stack.start_worker()
    run_cycle_on_worker(stack)
    email = email_event(to="jane@new-acme.example")
    stack.publish([email])
    assert stack.wait_outcomes([email["id"]])[email["id"]]["outcome"] == "skipped_no_contact"

    stack.admin.edit("Contact", jane, Email="jane@new-acme.example")
    run_cycle_on_worker(stack)

    assert wait_written_late(stack, [email["id"]])[email["id"]]["contact_id"] == jane


def test_given_waiting_emails_when_a_play_creates_the_contact_then_they_are_written_before_it(stack):
    stack.start_worker()
    earlier = [email_event(to=STRANGER, subject=f"before {n}", sent_at=sent(60 - n)) for n in range(2)]
    stack.publish(earlier)
    stack.wait_outcomes([e["id"] for e in earlier])

    play = email_event(to=STRANGER, play=SYNC_PLAY, first_name="Nia", last_name="Park", subject="the play")
    stack.publish([play])

    created = stack.wait_outcomes([play["id"]])[play["id"]]
    assert created["outcome"] == "written" and created["contact_created"] == "1"
    done = wait_written_late(stack, [e["id"] for e in earlier])
    assert {o["contact_id"] for o in done.values()} == {created["contact_id"]}
    assert len(stack.admin.records("Contact")) == 1
    assert len(stack.admin.records("EmailMessage")) == 3


def test_given_match_leads_when_a_lead_appears_then_the_waiting_email_is_written_to_the_lead(stack):
    stack.start_worker(match_leads="true")
    run_cycle_on_worker(stack)
    email = email_event(to=STRANGER, origin="manual")
    stack.publish([email])
    stack.wait_outcomes([email["id"]])

    (lead,) = stack.admin.seed("Lead", [{"LastName": "Park", "Company": "Startup", "Email": STRANGER}])
    run_cycle_on_worker(stack)

    done = wait_written_late(stack, [email["id"]])[email["id"]]
    assert done["contact_id"] == lead and done["person_object"] == "Lead"
    assert stack.admin.get("Task", done["record_id"])["WhoId"] == lead


# --- what it costs, and its bounds -------------------------------------------------------------------

def test_given_twenty_waiting_emails_when_their_contacts_appear_then_the_cycle_costs_one_call_and_one_write(stack):
    stack.start_worker(batch_size=50, flush_interval=1.0)
    run_cycle_on_worker(stack)
    people = [f"person{n}@startup.example" for n in range(10)]
    emails = [email_event(to=p, subject=f"{p} {k}") for p in people for k in range(2)]
    stack.publish(emails)
    stack.wait_outcomes([e["id"] for e in emails])
    stack.admin.seed("Contact", [{"LastName": f"P{n}", "Email": p} for n, p in enumerate(people)])
    stack.admin.reset_api_calls()

    cycle = run_cycle_on_worker(stack)
    wait_written_late(stack, [e["id"] for e in emails])

    # the cycle's one query found all 20: no call per waiting email, and the index it just filled
    # resolves them (no lookup); writing them costs, per batch, the check for emails logged elsewhere
    # and one collection call
    assert cycle["api_calls"] == "1" and cycle["late_released"] == "20", cycle
    calls = stack.admin.state()["api_calls_by_route"]
    assert set(calls) == {"GET queryAll", "GET query", "POST composite/sobjects"}, calls
    assert calls["GET queryAll"] == 1 and calls["GET query"] == calls["POST composite/sobjects"], calls
    assert calls["POST composite/sobjects"] <= 2, "one batch (two if a loaded machine splits them)"


def test_given_more_emails_than_the_bound_when_they_wait_then_the_oldest_are_dropped_and_counted(stack):
    stack.start_worker(late_contact_max=2)
    emails = [email_event(to=f"p{n}@startup.example") for n in range(3)]
    for email in emails:  # one at a time: the first waits longest
        stack.publish([email])
        stack.wait_outcomes([email["id"]])

    counted = late(stack, "count", late_contact_max=2)
    listed = late(stack, "list", late_contact_max=2)

    assert (counted["waiting"], counted["dropped"], counted["late_contact_max"]) == (2, 1, 2)
    assert [row["event_id"] for row in listed] == [emails[1]["id"], emails[2]["id"]]
    assert listed[0]["addresses"] == ["p1@startup.example"] and listed[0]["waiting_until"] > listed[0]["waiting_since"]
    assert counted["oldest_wait_seconds"] >= 0


def test_given_late_contacts_off_when_the_contact_appears_then_the_skipped_email_stays_skipped(stack):
    stack.start_worker(late_contact_days=0)
    run_cycle_on_worker(stack)
    email = email_event(to=STRANGER)
    stack.publish([email])
    outcome = stack.wait_outcomes([email["id"]])[email["id"]]
    assert outcome["outcome"] == "skipped_no_contact" and "waiting_until" not in outcome

    stack.admin.seed("Contact", [{"LastName": "Park", "Email": STRANGER}])
    cycle = run_cycle_on_worker(stack)

    assert cycle["late_released"] == "0"
    assert outcomes_of(stack, email["id"]) == ["skipped_no_contact"]
    assert stack.admin.records("EmailMessage") == []

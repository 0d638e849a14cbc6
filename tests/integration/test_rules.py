"""Every sync rule, proven through Redis, a real worker and the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import pytest

from tests.factories import SYNC_PLAY, contact_updated_event, email_event

pytestmark = pytest.mark.integration


def _one(records, **match):
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one record matching {match}, found {len(found)}"
    return found[0]


# --- rule 3: contacts from plays ----------------------------------------------------------

def test_given_20_events_for_one_new_person_on_two_workers_when_play_syncs_then_exactly_one_contact(stack):
    stack.start_worker(concurrency=2, batch_size=5, flush_interval=0.1)
    stack.start_worker(concurrency=1, batch_size=5, flush_interval=0.1)
    events = [email_event(to="new.person@startup.example", play=SYNC_PLAY, first_name="Nia", last_name="Park",
                          subject=f"step {n}", origin="manual" if n % 2 else "automated") for n in range(20)]

    stack.publish(events)
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=90)

    contacts = stack.admin.records("Contact", Email="new.person@startup.example")
    assert len(contacts) == 1
    assert contacts[0]["LastName"] == "Park" and contacts[0]["FirstName"] == "Nia"
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert {o["contact_id"] for o in outcomes.values()} == {contacts[0]["Id"]}
    by_object = {}
    for o in outcomes.values():
        by_object[o["sobject"]] = by_object.get(o["sobject"], 0) + 1
    assert by_object == {"Task": 10, "EmailMessage": 10}
    # 10 Tasks sfsync logged for manual sends + 10 that Enhanced Email made for the EmailMessages
    assert len(stack.admin.records("Task", WhoId=contacts[0]["Id"])) == 20


def test_given_no_play_when_person_unknown_then_nothing_created_and_skip_is_counted(stack):
    stack.start_worker()
    event = email_event(to="ghost@nowhere.example", play={"id": "p", "name": "No sync", "sync_to_salesforce": False})

    stack.publish([event])
    outcome = stack.wait_outcomes([event["id"]])[event["id"]]

    assert outcome["outcome"] == "skipped_no_contact"
    assert stack.admin.records("Contact", Email="ghost@nowhere.example") == []
    counts = stack.outcomes.counts("ws_acme")
    assert counts[("email.sent", "skipped_no_contact")] == 1


def test_given_a_play_update_for_a_person_without_any_address_when_synced_then_skipped_and_neighbours_written(stack):
    """Nothing can identify such a person, so no Contact is made; the rest of the batch is not held up."""
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    nobody = contact_updated_event(emails=[], changes={"title": "CRO"}, play=SYNC_PLAY, last_name="Nobody")
    neighbour = email_event()

    stack.publish([nobody, neighbour])
    outcomes = stack.wait_outcomes([nobody["id"], neighbour["id"]])

    assert outcomes[nobody["id"]]["outcome"] == "skipped_no_contact"
    assert outcomes[neighbour["id"]]["outcome"] == "written"
    assert stack.admin.records("Contact", LastName="Nobody") == []


def test_given_a_play_person_without_last_name_when_created_then_placeholder_is_sent(stack):
    stack.start_worker()
    event = email_event(to="mono@nym.example", play=SYNC_PLAY, first_name="Cher", last_name=None, country="Atlantis")

    stack.publish([event])
    outcome = stack.wait_outcomes([event["id"]])[event["id"]]

    contact = stack.admin.get("Contact", outcome["contact_id"])
    assert contact["LastName"] == "[not provided]"
    assert contact["FirstName"] == "Cher"
    assert contact.get("MailingCountryCode") in (None, "")  # unknown country left out, event still written
    assert outcome["outcome"] == "written"


# --- rule 2: matching ----------------------------------------------------------------------

def test_given_several_addresses_when_any_matches_then_the_contact_is_found_case_insensitively(stack):
    [cid] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "JANE@ACME.EXAMPLE"}])
    stack.start_worker()
    event = email_event(to="jane.private@home.example", person_emails=["jane.private@home.example",
                                                                     "Jane@Acme.Example"])
    stack.publish([event])
    assert stack.wait_outcomes([event["id"]])[event["id"]]["contact_id"] == cid


def test_given_quotes_and_injection_in_addresses_when_matched_then_escaped_and_never_widened(stack):
    ids = stack.admin.seed("Contact", [
        {"LastName": "O'Brien", "Email": "o'brien@x.example"},
        {"LastName": "Other", "Email": "other@x.example"},
        {"LastName": "Pct", "Email": "a%b_c\\d@x.example"},
    ])
    stack.start_worker()
    quoted = email_event(to="O'Brien@X.example")
    injected = email_event(to="x' or email != '@evil.example")
    wildcard = email_event(to="a_b%c\\d@x.example")  # must not LIKE-match a%b_c\d
    literal = email_event(to="a%b_c\\d@x.example")

    stack.publish([quoted, injected, wildcard, literal])
    out = stack.wait_outcomes([e["id"] for e in (quoted, injected, wildcard, literal)])

    assert out[quoted["id"]]["contact_id"] == ids[0]
    assert out[injected["id"]]["outcome"] == "skipped_no_contact"
    assert out[wildcard["id"]]["outcome"] == "skipped_no_contact"
    assert out[literal["id"]]["contact_id"] == ids[2]


def test_given_two_contacts_with_one_address_when_matched_then_the_documented_rule_picks_the_oldest(stack):
    first, second = stack.admin.seed("Contact", [{"LastName": "Old", "Email": "dup@acme.example"},
                                                 {"LastName": "New", "Email": "dup@acme.example"}])
    stack.admin.seed("Contact", [{"LastName": "NoEmail"}])
    stack.start_worker()
    events = [email_event(to="dup@acme.example") for _ in range(3)]
    stack.publish(events)
    out = stack.wait_outcomes([e["id"] for e in events])
    assert {o["contact_id"] for o in out.values()} == {first}


# --- rule 4: never overwrite ---------------------------------------------------------------

def test_given_two_updates_of_one_contact_in_a_batch_when_applied_then_one_write_in_order_of_the_events(stack):
    """A collection may not name one record twice; the updates are merged as if written one by one:
    a blank field is filled by the first event (the second no longer sees it blank), an `always`
    field ends with the last event's value."""
    (cid,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "pat@acme.example"}])
    stack.start_worker()
    first = contact_updated_event(emails=["pat@acme.example"], title="CTO", phone="+1 555 0100",
                                  changes={"title": "CTO", "sequence_status": "In Progress - Started"})
    second = contact_updated_event(emails=["pat@acme.example"], title="CEO",
                                   changes={"title": "CEO", "sequence_status": "Completed"})

    stack.publish([first, second])
    outcomes = stack.wait_outcomes([first["id"], second["id"]])

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    contact = stack.admin.get("Contact", cid)
    assert (contact["Title"], contact["Phone"], contact["Unify_Sequence_Status__c"]) == (
        "CTO", "+1 555 0100", "Completed")


def test_given_contact_updated_when_applied_then_typed_values_survive_blanks_fill_and_always_updates(stack):
    typed, blank = stack.admin.seed("Contact", [
        {"LastName": "Typed", "Email": "typed@acme.example", "Title": "Chief Executive",
         "Unify_Sequence_Status__c": "In Progress - Queued"},
        {"LastName": "Blank", "Email": "blank@acme.example", "Title": "   "},
    ])
    stack.start_worker()
    events = [
        contact_updated_event(emails=["typed@acme.example"], title="CRO",
                              changes={"title": "CRO", "sequence_status": "Completed"}),
        contact_updated_event(emails=["blank@acme.example"], title="Head of Ops", changes={"title": "Head of Ops"}),
    ]
    stack.publish(events)
    stack.wait_outcomes([e["id"] for e in events])

    kept = stack.admin.get("Contact", typed)
    assert kept["Title"] == "Chief Executive"
    assert kept["Unify_Sequence_Status__c"] == "Completed"
    assert stack.admin.get("Contact", blank)["Title"] == "Head of Ops"


# --- rule 1: the records -------------------------------------------------------------------

def test_given_automated_send_when_written_then_email_message_is_complete_and_only_one_task(stack):
    [cid] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    event = email_event(subject="Quick question, Jane", body_html="<p>Hi <b>Jane</b>, 15 minutes?</p>")
    stack.publish([event])
    out = stack.wait_outcomes([event["id"]])[event["id"]]

    message = stack.admin.get("EmailMessage", out["record_id"])
    assert message["Subject"] == "Quick question, Jane"
    assert "<b>Jane</b>" in message["HtmlBody"] and "Jane" in message["TextBody"] and "{{" not in message["TextBody"]
    assert message["Status"] == "3" and message["Incoming"] is False
    assert message["FromAddress"] == "riley@seller.example"
    assert message["MessageIdentifier"] == event["data"]["message_id"]
    sent = datetime.fromisoformat(event["data"]["sent_at"].replace("Z", "+00:00"))
    written = datetime.fromisoformat(message["MessageDate"].replace("Z", "+00:00").replace("+0000", "+00:00"))
    assert abs((written - sent).total_seconds()) < 1
    relations = stack.admin.records("EmailMessageRelation", EmailMessageId=out["record_id"])
    assert any(r["RelationId"] == cid and r["RelationType"] == "ToAddress" for r in relations)
    tasks = stack.admin.records("Task", WhoId=cid)
    assert len(tasks) == 1, "Enhanced Email makes the Task itself; sfsync must not add a second"


def test_given_reply_when_written_then_incoming_email_message_from_the_contact(stack):
    [cid] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    event = email_event(event_type="email.replied", subject="Re: hello", body_html="<p>Sure, Thursday.</p>")
    stack.publish([event])
    out = stack.wait_outcomes([event["id"]])[event["id"]]

    message = stack.admin.get("EmailMessage", out["record_id"])
    assert message["Incoming"] is True and "Thursday" in message["TextBody"]
    relations = stack.admin.records("EmailMessageRelation", EmailMessageId=out["record_id"])
    assert any(r["RelationId"] == cid and r["RelationType"] == "FromAddress" for r in relations)


def test_given_enhanced_email_off_when_automated_and_reply_then_tasks_with_text(stack):
    [cid] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.admin.set_features(enhanced_email=False)
    stack.start_worker()
    automated = email_event(body_html="<p>Hi Jane, rendered body.</p>")
    reply = email_event(event_type="email.replied", subject="Re: hi", body_html="<p>Thursday works.</p>")
    stack.publish([automated, reply])
    out = stack.wait_outcomes([automated["id"], reply["id"]])

    assert {o["sobject"] for o in out.values()} == {"Task"}
    task = stack.admin.get("Task", out[reply["id"]]["record_id"])
    assert "Thursday works." in task["Description"]
    auto_task = stack.admin.get("Task", out[automated["id"]]["record_id"])
    assert "rendered body" in auto_task["Description"] and "{{" not in auto_task["Description"]
    assert auto_task["WhoId"] == cid


def test_given_manual_email_when_written_then_task_owned_by_the_rep(stack):
    [cid] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    riley = _one(stack.admin.records("User"), Email="riley@seller.example")
    stack.start_worker()
    event = email_event(origin="manual", subject="From my own inbox")
    stack.publish([event])
    out = stack.wait_outcomes([event["id"]])[event["id"]]

    task = stack.admin.get("Task", out["record_id"])
    assert task["OwnerId"] == riley["Id"]
    assert task["WhoId"] == cid and task["TaskSubtype"] == "Email" and task["Status"] == "Completed"
    assert task["ActivityDate"] == event["data"]["sent_at"][:10]
    assert task["Subject"].endswith("From my own inbox")


def test_given_oversize_content_when_written_then_truncated_with_marker_not_failed(stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    huge = "<p>" + ("word " * 60_000) + "</p>"  # ~300 KB
    automated = email_event(subject="S" * 4000, body_html=huge)
    manual = email_event(origin="manual", subject="T" * 400, body_html=huge)
    stack.publish([automated, manual])
    out = stack.wait_outcomes([automated["id"], manual["id"]])

    assert {o["outcome"] for o in out.values()} == {"written"}
    message = stack.admin.get("EmailMessage", out[automated["id"]]["record_id"])
    assert len(message["HtmlBody"]) <= 131_072 and len(message["Subject"]) <= 3000
    task = stack.admin.get("Task", out[manual["id"]]["record_id"])
    assert len(task["Description"]) <= 32_000 and "truncated" in task["Description"]
    assert len(task["Subject"]) <= 255


# --- rule 5: mappings checked against describe -------------------------------------------

BAD_MAPPINGS = """\
contact:
  fields:
    - {source: country, target: MailingCountry}
    - {source: company, target: Product_Interest__c}
    - {source: title, target: No_Such_Field__c}
"""


def test_given_bad_mappings_when_validated_or_worker_started_then_refused_naming_each_field(stack, tmp_path):
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(BAD_MAPPINGS)
    env = stack.env(mappings=mappings)

    validate = subprocess.run([sys.executable, "-m", "workers.cli", "mappings", "validate"], env=env,
                              capture_output=True, text=True, timeout=60)
    worker = subprocess.run([sys.executable, "-m", "workers.cli", "worker"], env=env,
                            capture_output=True, text=True, timeout=60)

    for result in (validate, worker):
        text = result.stdout + result.stderr
        assert result.returncode != 0, text
        assert "MailingCountryCode" in text
        assert "Product_Interest__c" in text and "multi" in text.lower()
        assert "No_Such_Field__c" in text


def test_given_picklist_values_command_when_run_then_unify_statuses_printed():
    result = subprocess.run([sys.executable, "-m", "workers.cli", "mappings", "picklist-values"],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "In Progress - Started" in lines and "Bounce Stopped (Email Invalid)" in lines


def test_given_a_cached_contact_deleted_in_salesforce_when_next_email_then_resolved_again(stack):
    [old] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    first = email_event(origin="manual")
    stack.publish([first])
    assert stack.wait_outcomes([first["id"]])[first["id"]]["contact_id"] == old  # now in the index
    stack.admin.delete("Contact", old)
    [new] = stack.admin.seed("Contact", [{"LastName": "Doe-Again", "Email": "jane.doe@acme.example"}])

    second = email_event(origin="manual")
    stack.publish([second])
    outcome = stack.wait_outcomes([second["id"]])[second["id"]]

    assert outcome["outcome"] == "written"
    assert outcome["contact_id"] == new


def test_given_email_message_writeback_off_when_automated_email_then_task_with_rendered_text(stack):
    [cid] = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker(email_message_writeback=False)
    event = email_event(body_html="<p>Hi Jane, the rendered step.</p>")
    stack.publish([event])
    out = stack.wait_outcomes([event["id"]])[event["id"]]

    assert out["sobject"] == "Task"
    task = stack.admin.get("Task", out["record_id"])
    assert task["WhoId"] == cid and "the rendered step." in task["Description"]
    assert stack.admin.records("EmailMessage") == []

"""Leads, through Redis, a real worker and the emulator: matched (match_leads), created by plays
(play_creates: lead), filled under the never-overwrite rule, and converted Leads left alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from events.topology import OUTBOUND_QUEUE
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import WORKSPACE
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from tests.integration.test_crm_cycle import outbound, run_cycle_on_worker
from workers.cli import exits
from workers.local.stack import local_hosts
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

pytestmark = pytest.mark.integration

LEAD_MAPPINGS = """\
contact:
  fields:
    - {source: first_name, target: FirstName}
    - {source: last_name, target: LastName}
    - {source: title, target: Title}
    - {source: sequence_status, target: Unify_Sequence_Status__c, policy: always}
  alternate_email_fields: [Secondary_Email__c]
lead:
  fields:
    - {source: first_name, target: FirstName}
    - {source: last_name, target: LastName}
    - {source: title, target: Title}
    - {source: company, target: Company}
    - {source: country, target: CountryCode}
    - {source: sequence_status, target: Unify_Sequence_Status__c, policy: always}
"""


@pytest.fixture
def lead_mappings(tmp_path):
    path = tmp_path / "mappings.yaml"
    path.write_text(LEAD_MAPPINGS)
    return path


def seed_lead(admin, email="jane.doe@acme.example", **fields) -> str:
    return admin.seed("Lead", [{"FirstName": "Jane", "LastName": "Doe", "Company": "Acme", "Email": email,
                                **fields}])[0]


# --- off by default: the article's rule stands ------------------------------------------------------

def test_given_leads_not_matched_when_an_email_goes_to_a_lead_then_it_is_skipped_as_no_contact(stack):
    lead = seed_lead(stack.admin)
    stack.start_worker(late_contact_days=0)
    event = email_event()

    stack.publish([event])

    assert stack.wait_outcomes([event["id"]])[event["id"]]["outcome"] == "skipped_no_contact"
    assert stack.admin.records("EmailMessage") == [] and stack.admin.records("Task", WhoId=lead) == []


# --- matched ---------------------------------------------------------------------------------------

def test_given_match_leads_when_emails_go_to_a_lead_then_they_are_logged_on_the_lead(stack):
    lead = seed_lead(stack.admin, Secondary_Email__c="jane@home.example")
    riley = stack.admin.records("User", Email="riley@seller.example")[0]["Id"]
    stack.start_worker(match_leads="true")
    automated = email_event(subject="Sequence step")
    manual = email_event(origin="manual", subject="By hand")
    reply = email_event(event_type="email.replied", subject="Re: step", body_html="<p>Thursday</p>")

    stack.publish([automated, manual, reply])
    out = stack.wait_outcomes([e["id"] for e in (automated, manual, reply)])

    assert {o["outcome"] for o in out.values()} == {"written"}
    assert {o["contact_id"] for o in out.values()} == {lead}
    assert {o.get("person_object") for o in out.values()} == {"Lead"}
    sent = stack.admin.records("EmailMessageRelation", EmailMessageId=out[automated["id"]]["record_id"])
    assert [(r["RelationId"], r["RelationType"], r["RelationObjectType"]) for r in sent] == [
        (lead, "ToAddress", "Lead")]
    replied = stack.admin.records("EmailMessageRelation", EmailMessageId=out[reply["id"]]["record_id"])
    assert [(r["RelationId"], r["RelationType"]) for r in replied] == [(lead, "FromAddress")]
    task = stack.admin.get("Task", out[manual["id"]]["record_id"])
    assert task["WhoId"] == lead and task["OwnerId"] == riley and task["TaskSubtype"] == "Email"
    # the Lead's timeline: sfsync's Task, and the two Enhanced Email made for the EmailMessages
    assert len(stack.admin.records("Task", WhoId=lead)) == 3


def test_given_a_contact_and_a_lead_with_one_address_when_matched_then_the_contact_wins(stack):
    seed_lead(stack.admin)
    (contact,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker(match_leads="true")
    event = email_event()

    stack.publish([event])
    outcome = stack.wait_outcomes([event["id"]])[event["id"]]

    assert outcome["contact_id"] == contact and "person_object" not in outcome


def test_given_a_converted_lead_when_an_email_goes_to_its_address_then_its_contact_gets_it(stack):
    # the lead was converted into a contact that has another address: only the lead knows this one
    (contact,) = stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme-corp.example"}])
    lead = seed_lead(stack.admin)
    stack.admin.convert_lead(lead, contact_id=contact)
    stack.start_worker(match_leads="true")
    event = email_event(origin="manual")

    stack.publish([event])
    outcome = stack.wait_outcomes([event["id"]])[event["id"]]

    assert outcome["outcome"] == "written" and outcome["contact_id"] == contact
    assert stack.admin.get("Task", outcome["record_id"])["WhoId"] == contact
    assert stack.admin.get("Lead", lead)["LastModifiedById"] == stack.admin.state()["admin_user_id"]


def test_given_a_lead_remembered_by_the_worker_when_it_is_converted_then_the_next_email_goes_to_its_contact(stack):
    lead = seed_lead(stack.admin)
    stack.start_worker(match_leads="true")
    first = email_event(origin="manual")
    stack.publish([first])
    assert stack.wait_outcomes([first["id"]])[first["id"]]["contact_id"] == lead  # now in the lead index

    converted = stack.admin.convert_lead(lead)  # a new Contact with the same address
    second = email_event(origin="manual")
    stack.publish([second])
    outcome = stack.wait_outcomes([second["id"]], timeout=90)[second["id"]]

    # Salesforce refused the converted Lead (CANNOT_UPDATE_CONVERTED_LEAD): resolved again, to its Contact
    assert outcome["outcome"] == "written" and outcome["contact_id"] == converted["contact_id"]
    assert stack.admin.get("Task", outcome["record_id"])["WhoId"] == converted["contact_id"]
    history = [e for e in stack.recent_outcomes() if e.get("event_id") == second["id"]]
    assert [(e["outcome"], e.get("error_code")) for e in reversed(history)] == [
        ("retried", "CANNOT_UPDATE_CONVERTED_LEAD"), ("written", None)]


# --- created by plays ------------------------------------------------------------------------------

def test_given_play_creates_lead_when_a_play_syncs_new_people_then_one_lead_each_with_a_company(stack, lead_mappings):
    stack.start_worker(play_creates="lead", match_leads="true", mappings=lead_mappings)
    with_company = [email_event(to="nia@startup.example", play=SYNC_PLAY, first_name="Nia", last_name="Park",
                                subject=f"step {n}", country="Germany") for n in range(3)]
    without = email_event(to="sam@nowhere.example", play=SYNC_PLAY, last_name=None,
                          person={"emails": ["sam@nowhere.example"], "first_name": "Sam", "company": None})

    stack.publish([*with_company, without])
    out = stack.wait_outcomes([e["id"] for e in (*with_company, without)])

    assert {o["outcome"] for o in out.values()} == {"written"}
    (nia,) = stack.admin.records("Lead", Email="nia@startup.example")
    assert (nia["FirstName"], nia["LastName"], nia["Company"], nia["CountryCode"]) == ("Nia", "Park", "Acme", "DE")
    (sam,) = stack.admin.records("Lead", Email="sam@nowhere.example")
    assert (sam["LastName"], sam["Company"]) == ("[not provided]", "[not provided]")
    assert stack.admin.records("Contact") == []
    assert {out[e["id"]]["contact_id"] for e in with_company} == {nia["Id"]}
    assert {out[e["id"]]["contact_created"] for e in with_company} == {"1"}


def test_given_play_creates_lead_when_the_lead_exists_then_no_second_one_is_made(stack):
    lead = seed_lead(stack.admin, email="nia@startup.example")
    stack.start_worker(play_creates="lead")
    event = email_event(to="nia@startup.example", play=SYNC_PLAY)

    stack.publish([event])
    outcome = stack.wait_outcomes([event["id"]])[event["id"]]

    assert outcome["contact_id"] == lead and outcome["contact_created"] == "0"
    assert len(stack.admin.records("Lead")) == 1


# --- filled under the never-overwrite rule -----------------------------------------------------------

def test_given_a_lead_when_contact_updated_then_typed_values_survive_and_sequence_status_is_mapped(stack, lead_mappings):
    lead = seed_lead(stack.admin, Title="Chief Executive", Company="[not provided]")
    stack.start_worker(match_leads="true", mappings=lead_mappings)
    update = contact_updated_event(emails=["jane.doe@acme.example"], title="CRO", company="Acme GmbH",
                                   changes={"title": "CRO", "sequence_status": "Completed: Replied"})

    stack.publish([update])
    outcome = stack.wait_outcomes([update["id"]])[update["id"]]

    assert outcome["outcome"] == "written" and outcome["sobject"] == "Lead" and outcome["contact_id"] == lead
    record = stack.admin.get("Lead", lead)
    assert record["Title"] == "Chief Executive"            # typed by a person: kept
    assert record["Company"] == "Acme GmbH"                # the placeholder counts as blank
    assert record["Unify_Sequence_Status__c"] == "Completed: Replied"


# --- mappings checked against the Lead describe ---------------------------------------------------------

def test_given_bad_lead_mappings_when_validated_then_each_lead_field_is_named(stack, tmp_path):
    mappings = tmp_path / "bad.yaml"
    mappings.write_text("lead:\n  fields:\n"
                        "    - {source: country, target: Country}\n"
                        "    - {source: company, target: Product_Interest__c}\n"
                        "    - {source: title, target: Titel}\n")
    result = subprocess.run([sys.executable, "-m", "workers.cli", "mappings", "validate"],
                            env=stack.env(mappings=mappings), capture_output=True, text=True, timeout=60)
    text = result.stdout + result.stderr
    assert result.returncode == exits.DATA, text
    assert "Lead.Country" in text and "CountryCode" in text
    assert "Lead.Product_Interest__c" in text and "multi" in text.lower()
    assert "Lead.Titel" in text and "Title" in text


# --- back from Salesforce ------------------------------------------------------------------------------

def test_given_leads_matched_when_a_lead_changes_or_converts_then_unify_hears_of_it_as_a_lead(stack, lead_mappings):
    lead = seed_lead(stack.admin)
    stack.start_worker(match_leads="true", mappings=lead_mappings)
    run_cycle_on_worker(stack)  # the seed itself is published; out of the way
    stack.redis.delete(OUTBOUND_QUEUE)

    stack.admin.edit("Lead", lead, Title="VP Sales", Unify_Sequence_Status__c="Finished")
    cycle = run_cycle_on_worker(stack)

    assert cycle["ok"] == "1" and cycle["leads_published"] == "1", cycle
    (event,) = outbound(stack.redis)
    assert event["object"] == "Lead" and event["type"] == "salesforce.contact.changed"
    assert event["data"]["lead_id"] == lead and event["data"]["emails"] == ["jane.doe@acme.example"]
    assert event["data"]["fields"]["Title"] == "VP Sales"
    assert event["data"]["fields"]["Unify_Sequence_Status__c"] == "Finished"
    assert event["data"]["converted"] is False and event["workspace_id"] == WORKSPACE

    stack.redis.delete(OUTBOUND_QUEUE)
    converted = stack.admin.convert_lead(lead)
    run_cycle_on_worker(stack)
    events = {e["object"]: e for e in outbound(stack.redis)}
    assert events["Lead"]["data"]["converted"] is True
    assert events["Lead"]["data"]["converted_contact_id"] == converted["contact_id"]
    assert events["Contact"]["data"]["contact_id"] == converted["contact_id"]
    json.dumps(events)


def test_given_leads_not_used_when_a_lead_changes_then_the_cycle_reads_contacts_only(stack):
    lead = seed_lead(stack.admin)
    stack.start_worker()
    stack.admin.edit("Lead", lead, Title="VP Sales")

    cycle = run_cycle_on_worker(stack)

    assert cycle["ok"] == "1" and cycle["leads_published"] == "0" and cycle["api_calls"] == "1", cycle
    assert all(e["object"] == "Contact" for e in outbound(stack.redis))


def test_given_a_registered_workspace_with_leads_on_when_its_events_come_then_the_worker_follows_its_settings(stack):
    # the registry's settings, not the environment's: this workspace matches Leads, the environment's does not
    keys = new_key()
    connection = SalesforceConnection(instance_url=stack.emulator.url, access_token=stack.emulator.token)
    registry = Registry(stack.redis, Keyring(keys), hosts=HostPolicy.parse(local_hosts(stack.emulator.url)))
    registry.apply([WorkspaceSpec(id="ws_leads", salesforce=connection, match_leads=True, late_contact_days=0)])
    assert registry.get("ws_leads", secrets=False).public()["match_leads"] is True
    lead = seed_lead(stack.admin)
    stack.start_worker(secret_keys=keys)
    event = email_event(workspace_id="ws_leads")
    stranger = email_event(workspace_id="ws_leads", to="nobody@nowhere.example")

    stack.publish([event, stranger])
    out = stack.wait_outcomes([event["id"], stranger["id"]], workspace="ws_leads")

    assert out[event["id"]]["contact_id"] == lead and out[event["id"]]["person_object"] == "Lead"
    assert out[stranger["id"]]["outcome"] == "skipped_no_contact" and "waiting_until" not in out[stranger["id"]]

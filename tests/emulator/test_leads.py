"""Leads: required fields, describe, conversion (an admin call) and what a converted Lead refuses."""
from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from salesforce_emulator.client import AdminError


def _fields(sf):
    return {f["name"]: f for f in sf.Lead.describe()["fields"]}


def _lead(sf, **fields) -> str:
    return sf.Lead.create({"LastName": "Doe", "Company": "Acme", "Email": "jane@acme.example", **fields})["id"]


def _errors(results) -> list[str]:
    return [e["statusCode"] for r in results for e in r.get("errors") or ()]


# --- describe and required fields ---------------------------------------------------------------

def test_given_lead_describe_then_required_fields_conversion_fields_and_picklists_are_as_in_salesforce(sf):
    fields = _fields(sf)
    for required in ("LastName", "Company"):
        assert fields[required]["nillable"] is False and fields[required]["defaultedOnCreate"] is False
        assert fields[required]["createable"] is True
    assert fields["Status"]["defaultedOnCreate"] is True and fields["Status"]["restrictedPicklist"] is True
    assert {v["value"] for v in fields["Status"]["picklistValues"] if v["defaultValue"]} == {"Open - Not Contacted"}
    for conversion in ("IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedDate"):
        assert fields[conversion]["createable"] is False and fields[conversion]["updateable"] is False
    assert fields["ConvertedContactId"]["referenceTo"] == ["Contact"]
    assert fields["IsConverted"]["type"] == "boolean" and fields["IsConverted"]["defaultValue"] is False
    assert fields["CountryCode"]["type"] == "picklist" and fields["CountryCode"]["restrictedPicklist"] is True
    assert fields["Country"]["type"] == "string"
    assert fields["Product_Interest__c"]["type"] == "multipicklist"
    statuses = {v["value"] for v in fields["Unify_Sequence_Status__c"]["picklistValues"]}
    assert "Bounce Stopped (Email Invalid)" in statuses


@pytest.mark.parametrize("missing", ["LastName", "Company"])
def test_given_a_lead_without_a_required_field_when_created_then_required_field_missing_names_it(sf, missing):
    body = {"LastName": "Doe", "Company": "Acme", "Email": "jane@acme.example"}
    del body[missing]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create(body)
    assert caught.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert caught.value.content[0]["fields"] == [missing]


def test_given_a_new_lead_then_it_is_unconverted_with_the_default_status(sf):
    record = sf.Lead.get(_lead(sf))
    assert record["IsConverted"] is False and record["ConvertedContactId"] is None
    assert record["Status"] == "Open - Not Contacted" and record["Name"] == "Doe"


@pytest.mark.parametrize("field, value", [("IsConverted", True), ("ConvertedContactId", "003000000000000AAA")])
def test_given_conversion_fields_when_written_through_the_api_or_a_seed_then_refused(sf, emu, field, value):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _lead(sf, **{field: value})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(AdminError):
        emu.admin.seed("Lead", {"LastName": "Doe", "Company": "Acme", field: value})


def test_given_leads_when_queried_by_address_and_conversion_then_soql_filters_them(sf, emu):
    open_id = _lead(sf, Email="Open@Acme.example")
    done_id = _lead(sf, Email="done@acme.example")
    emu.admin.convert_lead(done_id)
    rows = sf.query_all("SELECT Id, IsConverted, ConvertedContactId FROM Lead "
                        "WHERE Email IN ('open@acme.example', 'done@acme.example')")["records"]
    assert {r["Id"]: r["IsConverted"] for r in rows} == {open_id: False, done_id: True}
    unconverted = sf.query_all("SELECT Id FROM Lead WHERE IsConverted = false")["records"]
    assert [r["Id"] for r in unconverted] == [open_id]


# --- conversion -----------------------------------------------------------------------------------

def test_given_a_lead_when_converted_then_contact_and_account_are_made_and_the_lead_points_at_them(sf, emu):
    lead = _lead(sf, FirstName="Jane", Title="VP Sales", CountryCode="DE",
                 Unify_Sequence_Status__c="In Progress - Started")
    task = sf.Task.create({"Subject": "Email: hi", "WhoId": lead, "TaskSubtype": "Email"})["id"]
    before = emu.admin.get("Lead", lead)["SystemModstamp"]

    converted = emu.admin.convert_lead(lead)

    record = emu.admin.get("Lead", lead)
    assert record["IsConverted"] is True and record["Status"] == "Closed - Converted"
    assert record["ConvertedContactId"] == converted["contact_id"] and record["ConvertedDate"]
    assert record["ConvertedAccountId"] == converted["account_id"] and record["SystemModstamp"] > before
    contact = emu.admin.get("Contact", converted["contact_id"])
    assert (contact["FirstName"], contact["LastName"], contact["Email"], contact["Title"]) == (
        "Jane", "Doe", "jane@acme.example", "VP Sales")
    assert contact["MailingCountryCode"] == "DE" and contact["Unify_Sequence_Status__c"] == "In Progress - Started"
    assert contact["AccountId"] == converted["account_id"]
    assert emu.admin.get("Account", converted["account_id"])["Name"] == "Acme"
    # its activities follow it to the contact, as Salesforce moves them
    assert converted["tasks_moved"] == 1 and emu.admin.get("Task", task)["WhoId"] == contact["Id"]


def test_given_an_existing_contact_when_a_lead_is_converted_into_it_then_no_new_contact_is_made(sf, emu):
    (contact,) = emu.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane@acme.example", "Title": "CRO"}])
    lead = _lead(sf, Title="VP Sales")

    converted = emu.admin.convert_lead(lead, contact_id=contact)

    assert converted["contact_id"] == contact and emu.admin.state()["counts"]["Contact"] == 1
    assert emu.admin.get("Contact", contact)["Title"] == "CRO"  # the existing contact is not overwritten
    assert emu.admin.get("Lead", lead)["ConvertedContactId"] == contact


def test_given_a_converted_lead_when_converted_again_then_refused_and_nothing_changes(sf, emu):
    lead = _lead(sf)
    emu.admin.convert_lead(lead)
    counts = emu.admin.state()["counts"]
    with pytest.raises(AdminError) as caught:
        emu.admin.convert_lead(lead)
    assert caught.value.status == 400 and "CANNOT_UPDATE_CONVERTED_LEAD" in caught.value.text
    assert emu.admin.state()["counts"] == counts


def test_given_a_deleted_contact_when_a_lead_is_converted_into_it_then_refused_and_the_lead_stays_open(sf, emu):
    lead = _lead(sf)
    (gone,) = emu.admin.seed("Contact", {"LastName": "Gone"})
    emu.admin.delete("Contact", gone)
    with pytest.raises(AdminError) as caught:
        emu.admin.convert_lead(lead, contact_id=gone)
    assert "ENTITY_IS_DELETED" in caught.value.text
    assert emu.admin.get("Lead", lead)["IsConverted"] is False
    assert emu.admin.state()["counts"]["Account"] == 0


# --- what a converted lead refuses ------------------------------------------------------------

def test_given_a_converted_lead_when_updated_then_cannot_update_converted_lead(sf, emu, api):
    lead = _lead(sf)
    emu.admin.convert_lead(lead)
    answer = api("PATCH", f"sobjects/Lead/{lead}", json={"Title": "CEO"})
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Lead"}, "Id": lead, "Title": "CEO"}]})
    assert _errors(results) == ["CANNOT_UPDATE_CONVERTED_LEAD"]
    assert emu.admin.get("Lead", lead)["Title"] is None


def test_given_a_converted_lead_when_a_task_names_it_then_cannot_update_converted_lead_on_who_id(sf, emu):
    lead = _lead(sf)
    open_lead = _lead(sf, Email="open@acme.example")
    emu.admin.convert_lead(lead)
    results = sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "Task"}, "Subject": "Email: hi", "WhoId": lead},
        {"attributes": {"type": "Task"}, "Subject": "Email: hi", "WhoId": open_lead}]})
    assert results[0]["success"] is False
    assert results[0]["errors"][0]["statusCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert results[0]["errors"][0]["fields"] == ["WhoId"]
    assert results[1]["success"] is True


def test_given_a_task_on_a_lead_converted_into_an_existing_contact_when_updated_then_it_follows_the_contact(sf, emu):
    lead = _lead(sf)
    task = sf.Task.create({"Subject": "Email: hi", "WhoId": lead})["id"]
    emu.admin.convert_lead(lead)
    sf.Task.update(task, {"Description": "still editable: it moved to the contact"})
    assert emu.admin.get("Task", task)["WhoId"] == emu.admin.get("Lead", lead)["ConvertedContactId"]


def test_given_a_converted_lead_when_an_email_is_related_to_it_then_cannot_update_converted_lead(sf, emu):
    lead = _lead(sf)
    emu.admin.convert_lead(lead)
    results = sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "EmailMessage"}, "Subject": "hi", "Status": "3", "ToIds": [lead]}]})
    assert _errors(results) == ["CANNOT_UPDATE_CONVERTED_LEAD"] and results[0]["errors"][0]["fields"] == ["ToIds"]
    message = sf.EmailMessage.create({"Subject": "Re: hi", "Status": "3", "Incoming": True})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.EmailMessageRelation.create({"EmailMessageId": message, "RelationId": lead,
                                        "RelationType": "FromAddress"})
    assert caught.value.content[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert emu.admin.records("EmailMessageRelation") == [] and emu.admin.records("Task") == []


# --- email on an unconverted lead --------------------------------------------------------------

def test_given_an_email_to_a_lead_then_relations_name_the_lead_and_the_timeline_task_is_on_it(sf, emu):
    lead = _lead(sf)
    sent = sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "EmailMessage"}, "Subject": "Hello", "Status": "3", "ToIds": [lead],
         "MessageDate": "2026-11-26T18:03:00.000Z"}]})[0]["id"]
    reply = sf.EmailMessage.create({"Subject": "Re: Hello", "Status": "3", "Incoming": True})["id"]
    sf.EmailMessageRelation.create({"EmailMessageId": reply, "RelationId": lead, "RelationType": "FromAddress",
                                    "RelationAddress": "jane@acme.example"})

    relations = {r["EmailMessageId"]: r for r in emu.admin.records("EmailMessageRelation")}
    assert relations[sent]["RelationId"] == lead and relations[sent]["RelationType"] == "ToAddress"
    assert relations[sent]["RelationObjectType"] == "Lead"
    assert relations[reply]["RelationType"] == "FromAddress" and relations[reply]["RelationObjectType"] == "Lead"
    tasks = emu.admin.records("Task", WhoId=lead)
    assert len(tasks) == 2 and {t["TaskSubtype"] for t in tasks} == {"Email"}
    assert emu.admin.get("EmailMessage", sent)["ActivityId"] in {t["Id"] for t in tasks}

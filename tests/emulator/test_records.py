"""Single-record REST calls: create, get, update, delete, upsert, and Salesforce's validation errors."""
from __future__ import annotations

import pytest
from simple_salesforce.exceptions import (SalesforceMalformedRequest, SalesforceMoreThanOneRecord,
                                          SalesforceResourceNotFound)


def test_given_a_new_contact_when_created_then_system_fields_and_defaults_are_set(sf, emu):
    answer = sf.Contact.create({"FirstName": "Jane", "LastName": "Doe", "Email": "jane@acme.example"})
    assert answer["success"] and answer["errors"] == [] and len(answer["id"]) == 18
    assert answer["id"].startswith("003")
    record = sf.Contact.get(answer["id"])
    api_user = emu.admin.state()["api_user_id"]
    assert record["Name"] == "Jane Doe"
    assert record["CreatedById"] == record["LastModifiedById"] == record["OwnerId"] == api_user
    assert record["CreatedDate"].endswith("+0000") and len(record["CreatedDate"]) == 28
    assert record["HasOptedOutOfEmail"] is False and record["IsDeleted"] is False


def test_given_a_record_when_getting_with_fields_then_only_those_fields_come_back(api, sf):
    contact = sf.Contact.create({"LastName": "Doe", "Title": "CRO"})["id"]
    body = api("GET", f"sobjects/Contact/{contact}", params={"fields": "Title,LastName"}).json()
    assert set(body) == {"attributes", "Title", "LastName"}


def test_given_a_record_when_patched_then_204_and_modstamp_moves_forward(sf, api):
    contact = sf.Contact.create({"LastName": "Doe"})["id"]
    before = sf.Contact.get(contact)["SystemModstamp"]
    assert api("PATCH", f"sobjects/Contact/{contact}", json={"Title": "CEO"}).status_code == 204
    after = sf.Contact.get(contact)
    assert after["Title"] == "CEO" and after["SystemModstamp"] > before


def test_given_a_record_when_deleted_then_204_and_get_is_404(sf, api):
    contact = sf.Contact.create({"LastName": "Doe"})["id"]
    assert api("DELETE", f"sobjects/Contact/{contact}").status_code == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.update(contact, {"Title": "x"})


def test_given_rapid_writes_then_modstamps_strictly_increase(sf, emu):
    ids = [sf.Contact.create({"LastName": f"P{i}"})["id"] for i in range(20)]
    stamps = [emu.admin.get("Contact", i)["SystemModstamp"] for i in ids]
    assert stamps == sorted(stamps) and len(set(stamps)) == 20


def test_given_collection_writes_then_each_record_gets_a_new_modstamp_even_when_nothing_changed(sf, emu):
    # Salesforce stamps every saved record, whether or not a value differs: a write is a change
    ids = [r["id"] for r in sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "Contact"}, "LastName": f"P{i}"} for i in range(3)]})]
    created = {i: emu.admin.get("Contact", i)["SystemModstamp"] for i in ids}
    sf.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Contact"}, "id": i, "LastName": f"P{n}"} for n, i in enumerate(ids)]})
    updated = {i: emu.admin.get("Contact", i)["SystemModstamp"] for i in ids}
    assert all(updated[i] > created[i] for i in ids) and len(set(updated.values())) == 3
    rows = sf.query_all("SELECT Id, SystemModstamp FROM Contact")["records"]
    assert {r["Id"]: r["SystemModstamp"] for r in rows} == updated


def test_given_an_external_id_when_upserting_then_201_created_then_200_updated(api, sf):
    path = "sobjects/Task/Unify_Event_Id__c/evt_1"
    created = api("PATCH", path, json={"Subject": "first"})
    assert created.status_code == 201 and created.json()["created"] is True
    updated = api("PATCH", path, json={"Subject": "second"})
    assert updated.status_code == 200 and updated.json() == {"id": created.json()["id"], "success": True,
                                                             "errors": [], "created": False}
    assert sf.Task.get(created.json()["id"])["Subject"] == "second"


def test_given_two_records_share_an_external_id_when_upserting_then_300_with_their_urls(sf, emu):
    emu.admin.seed("Contact", [{"LastName": "A", "Unify_Person_Id__c": "p1"},
                               {"LastName": "B", "Unify_Person_Id__c": "P1"}])
    with pytest.raises(SalesforceMoreThanOneRecord) as caught:
        sf.Contact.upsert("Unify_Person_Id__c/p1", {"Title": "x"})
    assert len(caught.value.content) == 2
    assert all(url.startswith("/services/data/v59.0/sobjects/Contact/003") for url in caught.value.content)


def test_given_an_external_id_when_getting_by_it_then_the_record_comes_back(api):
    api("PATCH", "sobjects/Task/Unify_Event_Id__c/evt_9", json={"Subject": "s"})
    assert api("GET", "sobjects/Task/Unify_Event_Id__c/evt_9").json()["Subject"] == "s"


def test_given_a_task_when_created_then_defaults_and_owner_are_those_of_salesforce(sf, emu):
    task = sf.Task.get(sf.Task.create({"Subject": "Call"})["id"])
    assert task["Status"] == "Not Started" and task["Priority"] == "Normal"
    assert task["OwnerId"] == emu.admin.state()["api_user_id"]


def _error(api, method, path, body):
    answer = api(method, path, json=body)
    assert answer.status_code == 400, answer.text
    return answer.json()[0]


@pytest.mark.parametrize("body, code, fields", [
    ({"LastName": "x", "Nope__c": 1}, "INVALID_FIELD", ["Nope__c"]),
    ({"LastName": "x", "Name": "y"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["Name"]),
    ({"LastName": "x", "CreatedDate": "2026-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["CreatedDate"]),
    ({"LastName": "x", "Title": "t" * 129}, "STRING_TOO_LONG", ["Title"]),
    ({"LastName": "x", "MailingCountryCode": "Germany"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
     ["MailingCountryCode"]),
    ({"LastName": "x", "Unify_Sequence_Status__c": "Running"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
     ["Unify_Sequence_Status__c"]),
    ({"LastName": "x", "Product_Interest__c": "Sequences;Teleportation"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
     ["Product_Interest__c"]),
    ({"FirstName": "x"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
    ({"LastName": ""}, "REQUIRED_FIELD_MISSING", ["LastName"]),
    ({"LastName": "x", "AccountId": "001xx"}, "MALFORMED_ID", ["AccountId"]),
    ({"LastName": "x", "AccountId": "0015g00000zzzzzAAA"}, "INVALID_CROSS_REFERENCE_KEY", ["AccountId"]),
    ({"LastName": "x", "Email": "not-an-address"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
    ({"LastName": "x", "HasOptedOutOfEmail": "yes"}, "JSON_PARSER_ERROR", []),
])
def test_given_an_invalid_contact_when_created_then_the_real_error_code(api, body, code, fields):
    error = _error(api, "POST", "sobjects/Contact/", body)
    assert error["errorCode"] == code
    assert error["fields"] == fields


def test_given_a_reference_to_the_wrong_object_type_then_invalid_cross_reference_key(api, sf):
    contact = sf.Contact.create({"LastName": "x"})["id"]
    assert _error(api, "POST", "sobjects/Contact/", {"LastName": "y", "AccountId": contact})["errorCode"] == \
        "INVALID_CROSS_REFERENCE_KEY"


def test_given_a_15_char_reference_when_creating_then_it_is_stored_as_18_chars(sf, emu):
    account = emu.admin.seed("Account", {"Name": "Acme"})[0]
    contact = sf.Contact.create({"LastName": "x", "AccountId": account[:15]})["id"]
    assert sf.Contact.get(contact)["AccountId"] == account


def test_given_a_duplicate_unique_value_when_creating_then_duplicate_value(api):
    assert api("POST", "sobjects/Task/", json={"Unify_Event_Id__c": "evt_1"}).status_code == 201
    error = _error(api, "POST", "sobjects/Task/", {"Unify_Event_Id__c": "EVT_1"})
    assert error["errorCode"] == "DUPLICATE_VALUE" and "evt" not in error["message"].lower().split("id:")[1]


def test_given_a_task_when_updating_its_subtype_then_refused_because_it_is_create_only(api, sf):
    task = sf.Task.create({"Subject": "x", "TaskSubtype": "Email"})["id"]
    assert _error(api, "PATCH", f"sobjects/Task/{task}", {"TaskSubtype": "Call"})["errorCode"] == \
        "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_given_a_task_with_a_wrong_date_type_then_json_parser_error(api):
    assert _error(api, "POST", "sobjects/Task/", {"ActivityDate": "next tuesday"})["errorCode"] == "JSON_PARSER_ERROR"


def test_given_a_validation_rule_when_a_record_trips_it_then_field_custom_validation_exception(api, emu):
    emu.admin.add_validation_rule("Task", "Subject", "contains", "{{", "Raw template placeholders")
    error = _error(api, "POST", "sobjects/Task/", {"Subject": "Hi {{person.firstName}}"})
    assert error == {"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Raw template placeholders",
                     "fields": ["Subject"]}
    emu.admin.clear_validation_rules()
    assert api("POST", "sobjects/Task/", json={"Subject": "Hi {{x}}"}).status_code == 201


def test_given_simple_salesforce_when_a_create_fails_then_content_carries_the_error_code(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Contact.create({"FirstName": "NoLast"})
    assert caught.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_given_an_update_that_blanks_a_required_field_then_required_field_missing(api, sf):
    contact = sf.Contact.create({"LastName": "x"})["id"]
    assert _error(api, "PATCH", f"sobjects/Contact/{contact}", {"LastName": None})["errorCode"] == \
        "REQUIRED_FIELD_MISSING"


def test_given_a_lead_without_company_then_required_field_missing(api):
    error = _error(api, "POST", "sobjects/Lead/", {"LastName": "x"})
    assert error["fields"] == ["Company"]


def test_given_changes_when_asking_for_updated_and_deleted_ids_then_the_window_is_honoured(sf, api):
    kept = sf.Contact.create({"LastName": "Kept"})["id"]
    gone = sf.Contact.create({"LastName": "Gone"})["id"]
    sf.Contact.delete(gone)
    window = {"start": "2000-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"}
    assert api("GET", "sobjects/Contact/updated/", params=window).json()["ids"] == [kept]
    deleted = api("GET", "sobjects/Contact/deleted/", params=window).json()["deletedRecords"]
    assert [d["id"] for d in deleted] == [gone]

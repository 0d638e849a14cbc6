"""Describe metadata: global and per-object, as the sfsync mapping validator reads it."""
from __future__ import annotations


def _fields(sf, name):
    return {f["name"]: f for f in getattr(sf, name).describe()["fields"]}


def test_given_global_describe_then_the_objects_have_names_and_key_prefixes(sf):
    objects = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert {name: objects[name]["keyPrefix"] for name in ("Account", "Contact", "Lead", "User", "Task",
                                                          "EmailMessage")} == {
        "Account": "001", "Contact": "003", "Lead": "00Q", "User": "005", "Task": "00T", "EmailMessage": "02s"}


def test_given_contact_describe_then_field_metadata_is_realistic(sf):
    fields = _fields(sf, "Contact")
    assert fields["LastName"]["nillable"] is False and fields["LastName"]["defaultedOnCreate"] is False
    assert fields["Name"]["calculated"] is True and fields["Name"]["createable"] is False
    assert fields["Title"]["length"] == 128 and fields["MailingCountry"]["length"] == 80
    assert fields["Email"]["type"] == "email" and fields["Secondary_Email__c"]["custom"] is True
    country = fields["MailingCountryCode"]
    assert country["type"] == "picklist" and country["restrictedPicklist"] is True
    assert {"DE", "US", "GB", "FR"} <= {v["value"] for v in country["picklistValues"]}
    assert fields["Product_Interest__c"]["type"] == "multipicklist"
    status = fields["Unify_Sequence_Status__c"]
    assert "Bounce Stopped (Email Invalid)" in {v["value"] for v in status["picklistValues"]}
    assert fields["AccountId"]["referenceTo"] == ["Account"] and fields["AccountId"]["relationshipName"] == "Account"
    for system in ("CreatedDate", "LastModifiedById", "SystemModstamp", "IsDeleted"):
        assert fields[system]["createable"] is False and fields[system]["updateable"] is False


def test_given_task_describe_then_subtype_is_create_only_and_the_event_id_is_a_unique_external_id(sf):
    fields = _fields(sf, "Task")
    assert fields["TaskSubtype"]["createable"] is True and fields["TaskSubtype"]["updateable"] is False
    event = fields["Unify_Event_Id__c"]
    assert event["externalId"] and event["unique"] and event["idLookup"] and event["length"] == 255
    assert fields["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    assert fields["Description"]["length"] == 32000 and fields["Subject"]["length"] == 255
    priority = {v["value"]: v["defaultValue"] for v in fields["Priority"]["picklistValues"]}
    assert priority["Normal"] is True


def test_given_email_message_describe_then_bodies_ids_and_activity_are_as_in_salesforce(sf):
    fields = _fields(sf, "EmailMessage")
    assert fields["HtmlBody"]["length"] == 131072 and fields["Subject"]["length"] == 3000
    assert fields["ActivityId"]["createable"] is False
    assert fields["ToIds"]["type"] == "junctionidlist"
    assert [v["value"] for v in fields["Status"]["picklistValues"]] == ["0", "1", "2", "3", "4", "5"]


def test_given_the_basic_info_resource_then_object_describe_is_returned(api):
    body = api("GET", "sobjects/Contact/").json()
    assert body["objectDescribe"]["name"] == "Contact" and body["recentItems"] == []


def test_given_paths_with_and_without_trailing_slashes_then_both_answer(api):
    for path in ("sobjects", "sobjects/", "sobjects/Task/describe", "sobjects/Task/describe/", "limits", "limits/"):
        assert api("GET", path).status_code == 200, path

"""EmailMessage with Enhanced Email on and off: relations, the automatic Task, and the draft-only rule."""
from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound


@pytest.fixture
def contact(emu):
    return emu.admin.seed("Contact", {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@acme.example"})[0]


def _email(**fields):
    return {"Subject": "Quick question", "TextBody": "Hi Jane", "HtmlBody": "<p>Hi Jane</p>",
            "FromAddress": "riley@seller.example", "Status": "3", "MessageDate": "2026-11-26T18:02:59.412Z",
            "Unify_Event_Id__c": "evt_1", **fields}


def test_given_enhanced_email_when_an_email_names_a_contact_then_relations_and_a_task_are_made(sf, emu, contact):
    message_id = sf.EmailMessage.create(_email(ToIds=[contact], CcIds=[emu.admin.state()["api_user_id"]]))["id"]
    assert message_id.startswith("02s")
    message = sf.EmailMessage.get(message_id)
    task = sf.Task.get(message["ActivityId"])
    assert task["Subject"] == "Email: Quick question" and task["TaskSubtype"] == "Email"
    assert task["Status"] == "Completed" and task["WhoId"] == contact and task["ActivityDate"] == "2026-11-26"
    relations = sf.query(f"SELECT RelationId, RelationType, RelationAddress FROM EmailMessageRelation "
                         f"WHERE EmailMessageId = '{message_id}' ORDER BY RelationType DESC")["records"]
    assert [(r["RelationType"], r["RelationAddress"]) for r in relations] == [
        ("ToAddress", "jane@acme.example"), ("CcAddress", "integration@sfsync.example")]
    assert message["MessageDate"] == "2026-11-26T18:02:59.412+0000"


def test_given_an_email_without_record_relations_then_no_task_is_made(sf, emu):
    message = sf.EmailMessage.get(sf.EmailMessage.create(_email(ToAddress="x@y.example"))["id"])
    assert message["ActivityId"] is None
    assert emu.admin.state()["counts"]["Task"] == 0


def test_given_a_reply_when_a_from_relation_to_the_contact_is_added_then_the_task_appears(sf, contact):
    message_id = sf.EmailMessage.create(_email(Incoming=True, Status="0"))["id"]
    sf.EmailMessageRelation.create({"EmailMessageId": message_id, "RelationId": contact,
                                    "RelationType": "FromAddress", "RelationAddress": "jane@acme.example"})
    task = sf.Task.get(sf.EmailMessage.get(message_id)["ActivityId"])
    assert task["WhoId"] == contact


def test_given_a_missing_recipient_id_then_invalid_cross_reference_key_and_nothing_is_left_behind(api, emu):
    answer = api("POST", "sobjects/EmailMessage/", json=_email(ToIds=["0035g00000zzzzzAAA"]))
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert emu.admin.state()["counts"]["EmailMessage"] == 0


def test_given_a_sent_email_when_updated_then_refused_but_custom_fields_and_drafts_may_change(sf, api, contact):
    sent = sf.EmailMessage.create(_email(ToIds=[contact]))["id"]
    refused = api("PATCH", f"sobjects/EmailMessage/{sent}", json={"Subject": "edited"})
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
    assert api("PATCH", f"sobjects/EmailMessage/{sent}", json={"Unify_Event_Id__c": "evt_2"}).status_code == 204
    draft = sf.EmailMessage.create(_email(Status="5", Unify_Event_Id__c="evt_3"))["id"]
    assert api("PATCH", f"sobjects/EmailMessage/{draft}", json={"Subject": "edited"}).status_code == 204


def test_given_activity_id_when_creating_an_email_then_refused_as_not_createable(api):
    answer = api("POST", "sobjects/EmailMessage/", json=_email(ActivityId="00T5g0000000001AAA"))
    assert answer.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_given_a_second_email_with_the_same_event_id_then_duplicate_value(api):
    assert api("POST", "sobjects/EmailMessage/", json=_email()).status_code == 201
    assert api("POST", "sobjects/EmailMessage/", json=_email()).json()[0]["errorCode"] == "DUPLICATE_VALUE"


def test_given_an_email_status_outside_the_picklist_then_restricted_picklist_error(api):
    answer = api("POST", "sobjects/EmailMessage/", json=_email(Status="Sent"))
    assert answer.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_given_enhanced_email_off_then_email_objects_vanish_from_describe_queries_and_writes(sf, api, emu):
    emu.admin.set_features(enhanced_email=False)
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert "EmailMessage" not in names and "EmailMessageRelation" not in names and "Task" in names
    with pytest.raises(SalesforceResourceNotFound):
        sf.EmailMessage.describe()
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM EmailMessage")
    assert caught.value.content[0]["errorCode"] == "INVALID_TYPE"
    assert api("POST", "sobjects/EmailMessage/", json=_email()).json()[0]["errorCode"] == "NOT_FOUND"
    results = sf.restful("composite/sobjects", method="POST",
                         json={"records": [{"attributes": {"type": "EmailMessage"}, **_email()}]})
    assert results[0]["errors"][0]["statusCode"] == "INVALID_TYPE"
    assert "not supported" in results[0]["errors"][0]["message"]
    emu.admin.set_features(enhanced_email=True)
    assert "EmailMessage" in {o["name"] for o in sf.describe()["sobjects"]}


def test_given_emails_logged_by_another_integration_when_queried_by_message_identifier_then_found_any_case(sf, emu):
    """How sfsync finds an email already logged elsewhere before it writes its own (one query a batch)."""
    emu.admin.seed("EmailMessage", [_email(MessageIdentifier="<CAF1x9@mail.example>", Unify_Event_Id__c=None),
                                    _email(MessageIdentifier="<other@mail.example>", Unify_Event_Id__c=None)])
    rows = sf.query_all("SELECT Id, MessageIdentifier FROM EmailMessage WHERE MessageIdentifier IN "
                        "('<caf1x9@mail.example>', '<missing@mail.example>')")["records"]
    assert [r["MessageIdentifier"] for r in rows] == ["<CAF1x9@mail.example>"]
    described = {f["name"]: f for f in sf.EmailMessage.describe()["fields"]}["MessageIdentifier"]
    assert described["filterable"] is True and described["unique"] is False and described["length"] == 255

"""Record builders: Contact create/fill, Task and EmailMessage as Salesforce would show them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from schemas.events import Person, parse_event
from schemas.mappings import MappingConfig
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from workers.sync.mappings import TRUNCATION_MARKER
from workers.sync.records import (
    TEMPLATE_NOTE,
    activity_extra_fields,
    build_contact,
    build_email_message,
    build_reply_relation,
    build_task,
    contact_updates,
    html_to_text,
    source_values,
)

SENT = datetime(2026, 11, 26, 18, 2, 59, 412000, tzinfo=timezone.utc)
CONTACT_ID = "003000000000001AAA"
OWNER_ID = "005000000000001AAA"


def picklist(name, values, length=255):
    return {"name": name, "type": "picklist", "length": length, "restrictedPicklist": True,
            "picklistValues": [{"value": v, "label": v, "active": True} for v in values]}


CONTACT_FIELDS = {
    "FirstName": {"name": "FirstName", "type": "string", "length": 40},
    "LastName": {"name": "LastName", "type": "string", "length": 80},
    "Title": {"name": "Title", "type": "string", "length": 128},
    "Phone": {"name": "Phone", "type": "phone", "length": 40},
    "MailingCountryCode": picklist("MailingCountryCode", ("DE", "US", "GB")),
    "Unify_Sequence_Status__c": picklist("Unify_Sequence_Status__c",
                                         ("In Progress - Started", "Completed", "Bounced")),
    "Company_Name__c": {"name": "Company_Name__c", "type": "string", "length": 255},
}

WITH_STATUS = MappingConfig.model_validate({"contact": {"fields": [
    {"source": "first_name", "target": "FirstName"},
    {"source": "last_name", "target": "LastName"},
    {"source": "title", "target": "Title"},
    {"source": "phone", "target": "Phone"},
    {"source": "country", "target": "MailingCountryCode"},
    {"source": "sequence_status", "target": "Unify_Sequence_Status__c", "policy": "always"},
    {"source": "company", "target": "Company_Name__c", "policy": "on_create"},
]}})


def event(**kw):
    kw.setdefault("sent_at", SENT)
    return parse_event(email_event(**kw))


# --- Contact ---------------------------------------------------------------------------------

def test_given_a_play_person_when_contact_built_then_mapped_and_converted_fields_and_first_address():
    person = Person(emails=["jane.doe@acme.example", "jane@home.example"], first_name="Jane", last_name="Doe",
                    title="VP Sales", country="Germany", company="Acme")
    fields, warnings = build_contact(person, WITH_STATUS, fields=CONTACT_FIELDS,
                                     changes={"sequence_status": "In Progress - Started"})
    assert fields == {"FirstName": "Jane", "LastName": "Doe", "Title": "VP Sales", "MailingCountryCode": "DE",
                      "Unify_Sequence_Status__c": "In Progress - Started", "Company_Name__c": "Acme",
                      "Email": "jane.doe@acme.example"}
    assert warnings == []


@pytest.mark.parametrize("last_name", [None, "", "   "])
def test_given_no_last_name_when_contact_built_then_the_visible_placeholder(last_name):
    person = Person(emails=["sales@acme.example"], first_name="Jane", last_name=last_name)
    fields, _ = build_contact(person, MappingConfig(), fields=CONTACT_FIELDS)
    assert fields["LastName"] == "[not provided]"


def test_given_a_configured_placeholder_when_contact_built_then_it_is_used():
    config = MappingConfig.model_validate({"contact": {"missing_last_name": "(unknown)"}})
    fields, _ = build_contact(Person(emails=["a@b.example"]), config)
    assert fields == {"LastName": "(unknown)", "Email": "a@b.example"}


def test_given_an_unknown_country_when_contact_built_then_left_out_with_a_warning_and_still_built():
    person = Person(emails=["a@b.example"], last_name="Doe", country="Narnia")
    fields, warnings = build_contact(person, MappingConfig(), fields=CONTACT_FIELDS)
    assert "MailingCountryCode" not in fields and fields["LastName"] == "Doe"
    assert warnings == ["MailingCountryCode left out: country 'Narnia' is not a recognised country"]


def test_given_a_mapped_field_the_org_lacks_when_contact_built_then_left_out_with_a_warning():
    plain = {k: v for k, v in CONTACT_FIELDS.items() if k != "MailingCountryCode"}
    fields, warnings = build_contact(Person(emails=["a@b.example"], last_name="Doe", country="Germany"),
                                     MappingConfig(), fields=plain)
    assert "MailingCountryCode" not in fields
    assert warnings == ["MailingCountryCode left out: the org has no such field"]


def test_given_an_explicit_address_when_contact_built_then_it_is_the_email():
    fields, _ = build_contact(Person(last_name="Doe"), MappingConfig(), email="jane@acme.example")
    assert fields["Email"] == "jane@acme.example"


def test_given_no_address_at_all_when_contact_built_then_refused():
    with pytest.raises(ValueError, match="email address"):
        build_contact(Person(last_name="Doe"), MappingConfig())


def test_given_an_email_event_from_a_play_when_contact_built_from_its_values_then_sequence_status_mapped():
    e = event(play=SYNC_PLAY, sequence_status="Completed")
    fields, _ = build_contact(e.data.person, WITH_STATUS, changes=source_values(e), fields=CONTACT_FIELDS)
    assert fields["Unify_Sequence_Status__c"] == "Completed"


def test_given_a_non_blank_title_when_updates_computed_then_it_survives():
    person = Person(emails=["a@b.example"], title="VP Sales")
    updates, _ = contact_updates(person, {"Id": CONTACT_ID, "Title": "Chief Revenue Officer"}, MappingConfig(),
                                 fields=CONTACT_FIELDS)
    assert "Title" not in updates


@pytest.mark.parametrize("current", [None, "", "  \t"])
def test_given_a_blank_title_when_updates_computed_then_it_is_filled(current):
    person = Person(emails=["a@b.example"], title="VP Sales")
    updates, _ = contact_updates(person, {"Id": CONTACT_ID, "Title": current}, MappingConfig(),
                                 fields=CONTACT_FIELDS)
    assert updates == {"Title": "VP Sales"}


def test_given_a_contact_updated_event_when_updates_computed_then_always_updated_and_on_create_ignored():
    e = parse_event(contact_updated_event(emails=["jane@acme.example"], title="VP", company="Acme",
                                          changes={"title": "CRO", "sequence_status": "Bounced"}))
    current = {"Id": CONTACT_ID, "FirstName": "Jane", "LastName": "Doe", "Title": "",
               "Unify_Sequence_Status__c": "Completed", "Company_Name__c": None}
    updates, warnings = contact_updates(e.data.person, current, WITH_STATUS, changes=source_values(e),
                                        fields=CONTACT_FIELDS)
    assert updates == {"Title": "CRO", "Unify_Sequence_Status__c": "Bounced"}
    assert warnings == []


def test_given_an_always_field_already_equal_when_updates_computed_then_nothing_to_write():
    e = parse_event(contact_updated_event(emails=["a@b.example"], changes={"sequence_status": "Completed"}))
    updates, _ = contact_updates(e.data.person, {"Unify_Sequence_Status__c": "Completed"}, WITH_STATUS,
                                 changes=source_values(e), fields=CONTACT_FIELDS)
    assert updates == {}


def test_given_the_placeholder_last_name_when_unify_learns_the_name_then_it_replaces_the_placeholder():
    person = Person(emails=["a@b.example"], last_name="Doe")
    updates, _ = contact_updates(person, {"LastName": "[not provided]"}, MappingConfig(), fields=CONTACT_FIELDS)
    assert updates == {"LastName": "Doe"}
    kept, _ = contact_updates(person, {"LastName": "Doe-Smith"}, MappingConfig(), fields=CONTACT_FIELDS)
    assert kept == {}


def test_given_a_value_unify_no_longer_has_when_updates_computed_then_salesforce_is_not_cleared():
    person = Person(emails=["a@b.example"], title=None)
    updates, _ = contact_updates(person, {"Title": ""}, MappingConfig(), fields=CONTACT_FIELDS)
    assert updates == {}


def test_given_a_bad_value_for_a_field_the_policy_keeps_when_updates_computed_then_no_warning():
    person = Person(emails=["a@b.example"], country="Narnia")
    _, kept = contact_updates(person, {"MailingCountryCode": "DE"}, MappingConfig(), fields=CONTACT_FIELDS)
    _, blank = contact_updates(person, {"MailingCountryCode": None}, MappingConfig(), fields=CONTACT_FIELDS)
    assert kept == [] and len(blank) == 1


# --- Task ------------------------------------------------------------------------------------

def test_given_a_manual_email_when_task_built_then_a_completed_email_task_on_the_contact():
    task = build_task(event(origin="manual"), contact_id=CONTACT_ID, owner_id=OWNER_ID,
                      event_id_field="Unify_Event_Id__c")
    assert task["WhoId"] == CONTACT_ID and task["OwnerId"] == OWNER_ID
    assert (task["TaskSubtype"], task["Status"], task["ActivityDate"]) == ("Email", "Completed", "2026-11-26")
    assert task["Subject"] == "Email: Quick question, Jane"
    assert task["Unify_Event_Id__c"].startswith("evt_")


def test_given_no_owner_or_event_id_field_when_task_built_then_those_fields_are_absent():
    task = build_task(event(), contact_id=CONTACT_ID, owner_id=None, extra_fields={"Unify_Play__c": "Hot"})
    assert "OwnerId" not in task and "Unify_Event_Id__c" not in task
    assert task["Unify_Play__c"] == "Hot"


def test_given_a_send_late_in_the_evening_elsewhere_when_task_built_then_the_utc_date():
    late = datetime(2026, 11, 26, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert build_task(event(sent_at=late), contact_id=CONTACT_ID)["ActivityDate"] == "2026-11-27"


def test_given_a_rendered_body_when_task_built_then_readable_text_with_headers_and_no_template_braces():
    e = event(cc=[{"email": "boss@acme.example", "name": "Boss"}],
              body_html="<html><head><style>p{color:red}</style></head><body><p>Hi Jane,</p>"
                        "<p>1. Fast <b>setup</b></p><ul><li>one</li></ul></body></html>")
    description = build_task(e, contact_id=CONTACT_ID)["Description"]
    assert description.startswith("From: Riley Rep <riley@seller.example>\n"
                                  "To: Jane Doe <jane.doe@acme.example>\n"
                                  "CC: Boss <boss@acme.example>\n"
                                  "Subject: Quick question, Jane\n"
                                  "Sent: 2026-11-26 18:02:59 UTC\n\nBody:\n")
    assert "Hi Jane,\n\n1. Fast setup" in description
    assert "{{" not in description and "<p>" not in description and "color" not in description


def test_given_only_a_text_body_when_task_built_then_that_text_and_no_template():
    e = event(body_html=None, body_text="Hi Jane, plain.")
    description = build_task(e, contact_id=CONTACT_ID)["Description"]
    assert description.endswith("Body:\nHi Jane, plain.") and "{{" not in description


def test_given_only_the_template_when_task_built_then_it_says_so():
    e = event(body_html=None, body_text=None, subject="")
    task = build_task(e, contact_id=CONTACT_ID)
    assert TEMPLATE_NOTE in task["Description"]
    assert task["Description"].endswith(TEMPLATE_NOTE + "\nHi {{person.firstName}}, ...")
    assert task["Subject"] == "Email: Quick question, {{person.firstName}}"


def test_given_a_rendered_body_but_no_subject_when_task_built_then_no_template_subject():
    task = build_task(event(subject=""), contact_id=CONTACT_ID)
    assert task["Subject"] == "Email: (no subject)"


def test_given_a_reply_when_logged_as_a_task_then_it_carries_the_reply_text():
    e = event(event_type="email.replied", subject="Re: Quick question, Jane",
              body_html="<p>Sounds good, call me Tuesday.</p>")
    task = build_task(e, contact_id=CONTACT_ID)
    assert task["Subject"] == "Email: Re: Quick question, Jane"
    assert task["Description"].startswith("From: Jane Doe <jane.doe@acme.example>\nTo: Riley Rep")
    assert task["Description"].endswith("Body:\nSounds good, call me Tuesday.")


def test_given_a_long_subject_when_task_built_then_cut_to_255_with_a_marker():
    subject = build_task(event(subject="s" * 400), contact_id=CONTACT_ID)["Subject"]
    assert len(subject) == 255 and subject.endswith(TRUNCATION_MARKER)


def test_given_a_huge_body_when_task_built_then_description_cut_to_32000_with_a_marker():
    description = build_task(event(body_html=None, body_text="x" * 40_000), contact_id=CONTACT_ID)["Description"]
    assert len(description) == 32_000 and description.endswith(TRUNCATION_MARKER)


def test_given_markdown_like_text_when_converted_then_no_markdown_escapes():
    assert html_to_text("<p>1. first</p><p>- dash + plus \\ back</p>") == "1. first\n\n- dash + plus \\ back"


# --- EmailMessage ----------------------------------------------------------------------------

def test_given_an_automated_send_when_email_message_built_then_rendered_exact_and_linked():
    e = event(cc=[{"email": "boss@acme.example"}], bcc=[{"email": "crm@acme.example"}], thread_id="thr_9")
    message = build_email_message(e, contact_id=CONTACT_ID, event_id_field="Unify_Event_Id__c")
    assert message["Subject"] == "Quick question, Jane"
    assert message["HtmlBody"] == "<p>Hi Jane, <b>quick</b> one.</p>"
    assert message["TextBody"] == "Hi Jane, quick one."
    assert (message["FromAddress"], message["FromName"]) == ("riley@seller.example", "Riley Rep")
    assert (message["ToAddress"], message["CcAddress"], message["BccAddress"]) == (
        "jane.doe@acme.example", "boss@acme.example", "crm@acme.example")
    assert message["MessageDate"] == "2026-11-26T18:02:59.412Z"
    assert (message["Status"], message["Incoming"]) == ("3", False)
    assert message["MessageIdentifier"] == e.data.message_id
    assert message["ThreadIdentifier"] == message["ClientThreadIdentifier"] == "thr_9"
    assert message["ToIds"] == [CONTACT_ID]
    assert message["Unify_Event_Id__c"] == e.id
    assert "{{" not in str(message)


def test_given_a_send_in_another_timezone_when_email_message_built_then_message_date_is_utc_to_the_ms():
    moment = datetime(2026, 11, 26, 20, 2, 59, 7000, tzinfo=timezone(timedelta(hours=2)))
    assert build_email_message(event(sent_at=moment), contact_id=CONTACT_ID)["MessageDate"] == \
        "2026-11-26T18:02:59.007Z"


def test_given_a_reply_when_email_message_built_then_incoming_without_to_ids_and_a_from_relation():
    e = event(event_type="email.replied", body_html="<p>Yes please</p>")
    message = build_email_message(e, contact_id=CONTACT_ID)
    assert message["Incoming"] is True and "ToIds" not in message
    assert message["FromAddress"] == "jane.doe@acme.example"
    assert message["TextBody"] == "Yes please"
    assert build_reply_relation("02s000000000001AAA", CONTACT_ID, "jane.doe@acme.example") == {
        "EmailMessageId": "02s000000000001AAA", "RelationId": CONTACT_ID,
        "RelationType": "FromAddress", "RelationAddress": "jane.doe@acme.example"}


def test_given_only_a_template_when_email_message_built_then_the_text_says_so():
    message = build_email_message(event(body_html=None, body_text=None), contact_id=CONTACT_ID)
    assert "HtmlBody" not in message
    assert message["TextBody"].startswith(TEMPLATE_NOTE)


@pytest.mark.parametrize("field, limit, overrides", [
    ("Subject", 3_000, {"subject": "s" * 3_500}),
    ("HtmlBody", 131_072, {"body_html": "<p>" + "x" * 140_000 + "</p>"}),
    ("TextBody", 131_072, {"body_text": "x" * 140_000}),
    ("FromName", 1_000, {"from": {"email": "riley@seller.example", "name": "n" * 1_200}}),
])
def test_given_text_over_a_salesforce_limit_when_email_message_built_then_cut_with_a_marker(field, limit, overrides):
    value = build_email_message(event(**overrides), contact_id=CONTACT_ID)[field]
    assert len(value) == limit and value.endswith(TRUNCATION_MARKER)


@pytest.mark.parametrize("field, key", [("ToAddress", "to"), ("CcAddress", "cc"), ("BccAddress", "bcc")])
def test_given_many_recipients_when_email_message_built_then_whole_addresses_within_4000(field, key):
    recipients = [{"email": f"person{i:03d}@{'d' * 40}.example"} for i in range(150)]
    raw = email_event(sent_at=SENT)
    raw["data"][key] = recipients
    value = build_email_message(parse_event(raw), contact_id=CONTACT_ID)[field]
    assert len(value) <= 4_000 and TRUNCATION_MARKER not in value
    assert all(part in {r["email"] for r in recipients} for part in value.split(";"))


def test_given_identifiers_over_their_limits_when_email_message_built_then_never_cut_mid_way():
    long_id = "<" + "m" * 300 + "@mail.example>"
    e = event(message_id=long_id, thread_id="t" * 300)
    message = build_email_message(e, contact_id=CONTACT_ID)
    assert "MessageIdentifier" not in message  # a cut Message-ID would match another email
    assert len(message["ThreadIdentifier"]) <= 255 and len(message["ClientThreadIdentifier"]) <= 40
    again = build_email_message(event(message_id=long_id, thread_id="t" * 300), contact_id=CONTACT_ID)
    assert again["ThreadIdentifier"] == message["ThreadIdentifier"]  # same thread, same id


def test_given_task_and_email_message_mappings_when_extra_fields_built_then_converted():
    config = MappingConfig.model_validate({
        "task": {"fields": [{"source": "play_name", "target": "Unify_Play__c"},
                            {"source": "sequence_step", "target": "Step__c"},
                            {"source": "origin", "target": "Origin__c", "policy": "never"}]},
        "email_message": {"fields": [{"source": "sequence_name", "target": "Unify_Sequence__c"}]}})
    e = event(play=SYNC_PLAY)
    fields = {"Step__c": {"name": "Step__c", "type": "double", "length": 0},
              "Unify_Play__c": {"name": "Unify_Play__c", "type": "string", "length": 80}}
    assert activity_extra_fields(e, config, "Task", fields=fields) == (
        {"Unify_Play__c": "Inbound hot leads", "Step__c": 2}, [])
    assert activity_extra_fields(e, config, "EmailMessage") == ({"Unify_Sequence__c": "Q4 outbound"}, [])


def test_given_a_describe_when_mapping_many_events_then_its_lower_cased_names_are_worked_out_once_per_describe():
    from workers.sync.records import _by_lower
    first = {"Subject": {"name": "Subject"}, "Unify_Play__c": {"name": "Unify_Play__c"}}
    assert _by_lower(first) is _by_lower(first)
    assert set(_by_lower(first)) == {"subject", "unify_play__c"}
    refreshed = {"Subject": {"name": "Subject"}}  # a describe read again is a new object: read afresh
    assert set(_by_lower(refreshed)) == {"subject"}
    assert _by_lower(None) == {} and _by_lower({}) == {}

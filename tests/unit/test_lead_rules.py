"""Leads' pure half: which Lead (or its Contact) is the record, the Lead sfsync creates or fills, the
`lead:` mappings checked against the Lead describe, and the outbound event of a Lead change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.outbound import lead_changed_event
from schemas.events import Person
from schemas.mappings import MappingConfig
from workers.crm import LEAD_BASE_FIELDS, changes_query, selected_fields
from workers.sync.mappings import TRUNCATION_MARKER, errors_and_warnings, usable_mappings, validate_mappings
from workers.sync.records import build_lead, lead_updates
from workers.sync.resolve import choose_lead, lead_query

FIELDS = ["Email"]
OLD, NEW = "2026-01-01T00:00:00.000+0000", "2026-06-01T00:00:00.000+0000"


def lead(lead_id, email, created=OLD, converted_to=None):
    return {"Id": lead_id, "Email": email, "CreatedDate": created, "IsConverted": converted_to is not None,
            "ConvertedContactId": converted_to}


# --- which record ------------------------------------------------------------------------------------

@pytest.mark.parametrize("addresses, leads, expected", [
    # no lead has the address
    (["jane@acme.example"], [lead("00QA", "sam@acme.example")], None),
    # one open lead
    (["jane@acme.example"], [lead("00QA", "Jane@Acme.example")], ("Lead", "00QA")),
    # two open leads: the rule of contacts (earliest address first, then oldest, then lowest id)
    (["jane@home.example", "jane@acme.example"],
     [lead("00QA", "jane@acme.example"), lead("00QB", "jane@home.example", NEW)], ("Lead", "00QB")),
    (["jane@acme.example"], [lead("00QB", "jane@acme.example", NEW), lead("00QA", "jane@acme.example", NEW)],
     ("Lead", "00QA")),
    # a converted lead is never the record: its Contact is, and it wins over an open lead
    (["jane@acme.example"], [lead("00QA", "jane@acme.example", converted_to="003C")], ("Contact", "003C")),
    (["jane@acme.example"], [lead("00QA", "jane@acme.example"),
                             lead("00QB", "jane@acme.example", NEW, converted_to="003C")], ("Contact", "003C")),
    # converted without a contact to go to (cannot happen in Salesforce): nobody
    (["jane@acme.example"], [{**lead("00QA", "jane@acme.example"), "IsConverted": True}], None),
])
def test_given_leads_when_one_is_chosen_then_the_documented_rule_decides(addresses, leads, expected):
    chosen = choose_lead(addresses, leads, FIELDS)
    assert (None if chosen is None else (chosen[0], chosen[1]["Id"])) == expected


def test_given_lead_fields_when_the_lead_query_is_built_then_converted_leads_are_asked_for_too():
    assert lead_query(["Email", "Secondary_Email__c"]) == (
        "SELECT Id, CreatedDate, Email, Secondary_Email__c, IsConverted, ConvertedContactId FROM Lead "
        "WHERE Email IN {values} OR Secondary_Email__c IN {values}")


# --- the Lead sfsync creates or fills -------------------------------------------------------------------

LEAD_FIELDS = {name: {"name": name, "type": "string", "length": length}
               for name, length in (("FirstName", 40), ("LastName", 80), ("Title", 128), ("Company", 255),
                                    ("Phone", 40))}
LEAD_FIELDS["CountryCode"] = {"name": "CountryCode", "type": "picklist", "length": 10, "restrictedPicklist": True,
                              "picklistValues": [{"value": v, "active": True} for v in ("DE", "US")]}


@pytest.mark.parametrize("company, expected", [("Acme", "Acme"), (None, "[not provided]"), ("  ", "[not provided]"),
                                               ("A" * 300, "A" * (255 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER)])
def test_given_a_play_person_when_a_lead_is_built_then_company_is_theirs_or_the_placeholder(company, expected):
    person = Person(emails=["nia@startup.example"], first_name="Nia", last_name="Park", company=company,
                    country="Germany")
    fields, warnings = build_lead(person, MappingConfig(), fields=LEAD_FIELDS)
    assert fields["Company"] == expected
    assert (fields["FirstName"], fields["LastName"], fields["CountryCode"], fields["Email"]) == (
        "Nia", "Park", "DE", "nia@startup.example")
    assert warnings == (["Company truncated to 255 characters"] if company and len(company) > 255 else [])


def test_given_lead_mappings_without_company_when_a_lead_is_built_then_company_is_still_set():
    config = MappingConfig.model_validate({"lead": {"fields": [{"source": "title", "target": "Title"}],
                                                    "missing_company": "(unknown)"}})
    fields, _ = build_lead(Person(emails=["a@b.example"], company="Acme"), config)
    assert fields == {"LastName": "[not provided]", "Email": "a@b.example", "Company": "Acme"}
    fields, _ = build_lead(Person(emails=["a@b.example"]), config)
    assert fields["Company"] == "(unknown)"


def test_given_an_existing_lead_when_updates_planned_then_typed_values_stay_and_placeholders_count_as_blank():
    config = MappingConfig.model_validate({"lead": {"fields": [
        {"source": "title", "target": "Title"}, {"source": "company", "target": "Company"},
        {"source": "last_name", "target": "LastName"},
        {"source": "sequence_status", "target": "Unify_Sequence_Status__c", "policy": "always"}]}})
    current = {"Title": "Chief Executive", "Company": "[not provided]", "LastName": "[not provided]",
               "Unify_Sequence_Status__c": "In Progress - Started"}
    person = Person(emails=["a@b.example"], title="CRO", company="Acme", last_name="Park")
    writes, _ = lead_updates(person, current, config, changes={"sequence_status": "Completed"})
    assert writes == {"Company": "Acme", "LastName": "Park", "Unify_Sequence_Status__c": "Completed"}


# --- the lead: section checked against the Lead describe ----------------------------------------------------

def describe_of(lead_fields):
    lead = {"name": "Lead", "fields": [{"name": n, "createable": True, "updateable": True, "length": 255, **f}
                                       for n, f in lead_fields.items()]}
    contact = {"name": "Contact", "fields": [{"name": n, "type": "string", "length": 80, "createable": True,
                                              "updateable": True} for n in ("FirstName", "LastName", "Title", "Phone")]}
    return {"Lead": lead, "Contact": contact}.get


STANDARD_LEAD = {"FirstName": {"type": "string"}, "LastName": {"type": "string"}, "Title": {"type": "string"},
                 "Phone": {"type": "phone"}, "Company": {"type": "string"}, "Email": {"type": "email"},
                 "Country": {"type": "string"}}


def configured(lead_section):
    return MappingConfig.model_validate({"lead": lead_section}).model_copy(update={"origin": "mappings.yaml"})


def test_given_a_lead_section_when_checked_then_every_contact_rule_applies_to_lead_fields():
    fields = {**STANDARD_LEAD, "Interest__c": {"type": "multipicklist"},
              "Status__c": {"type": "picklist", "restrictedPicklist": True,
                            "picklistValues": [{"value": "Completed", "active": True}]}}
    config = configured({"fields": [{"source": "country", "target": "Country"},
                               {"source": "title", "target": "Interest__c"},
                               {"source": "sequence_status", "target": "Status__c", "policy": "always"},
                               {"source": "title", "target": "Titel"}]})
    errors, _ = errors_and_warnings(validate_mappings(config, describe_of(fields)))
    by_field = {p.field: p for p in errors if p.object == "Lead"}
    assert set(by_field) == {"Country", "Interest__c", "Status__c", "Titel"}
    assert "CountryCode" in by_field["Country"].hint
    assert "multi-select" in by_field["Interest__c"].reason
    assert "In Progress - Started" in by_field["Status__c"].reason
    assert by_field["Titel"].hint == "did you mean Title?"


def test_given_no_lead_section_when_the_org_lacks_a_default_target_then_it_is_only_a_warning_and_dropped():
    config = MappingConfig.model_validate({"contact": {"fields": [{"source": "title", "target": "Title"}]}}
                                          ).model_copy(update={"origin": "mappings.yaml"})
    errors, warnings = errors_and_warnings(validate_mappings(config, describe_of(STANDARD_LEAD)))
    assert errors == [] and [(p.object, p.field) for p in warnings] == [("Lead", "CountryCode")]
    # a lead section the file gives is the admin's: the same gap is an error then
    given_too = configured({"fields": [{"source": "country", "target": "CountryCode"}]})
    assert [(p.object, p.field) for p in errors_and_warnings(validate_mappings(given_too, describe_of(STANDARD_LEAD)))[0]
            if p.object == "Lead"] == [("Lead", "CountryCode")]
    assert "CountryCode" not in {m.target for m in usable_mappings(config, warnings).lead.fields}


def test_given_no_lead_section_and_no_lead_object_then_nothing_is_said():
    config = MappingConfig().model_copy(update={"origin": "mappings.yaml"})
    assert [p for p in validate_mappings(config, describe_of(STANDARD_LEAD)) if p.object == "Lead"
            and p.field == "*"] == []
    no_lead = {"Contact": describe_of(STANDARD_LEAD)("Contact")}.get
    assert [p for p in validate_mappings(config, no_lead) if p.object == "Lead"] == []


def test_given_a_lead_section_when_it_maps_conversion_fields_or_email_then_refused_at_load():
    for target in ("IsConverted", "ConvertedContactId", "Email"):
        with pytest.raises(ValueError, match="written by sfsync itself"):
            MappingConfig.model_validate({"lead": {"fields": [{"source": "title", "target": target}]}})


def test_given_lead_alternate_email_fields_when_checked_then_named_on_lead():
    config = configured({"alternate_email_fields": ["Nope__c"]})
    errors, _ = errors_and_warnings(validate_mappings(config, describe_of(STANDARD_LEAD)))
    assert [(p.field, p.reason) for p in errors if p.object == "Lead"] == [
        ("CountryCode", "Lead has no field CountryCode"), ("Nope__c", "Lead has no field Nope__c")]


# --- back to Unify ------------------------------------------------------------------------------------------

def test_given_a_converted_lead_row_when_its_event_is_built_then_it_says_lead_and_where_it_went():
    row = {"Id": "00Q000000000042AAA", "IsDeleted": False, "Email": "Jane@Acme.example", "Title": "CRO",
           "IsConverted": True, "ConvertedContactId": "003000000000001AAA"}
    event = lead_changed_event("ws_acme", row, modstamp_ms=1_795_716_180_412, email_fields=["Email"],
                               mapped_fields=["Title"])
    assert event == {
        "id": "sfl_00Q000000000042AAA_1795716180412", "type": "salesforce.contact.changed", "version": 1,
        "object": "Lead", "workspace_id": "ws_acme", "occurred_at": "2026-11-26T18:03:00.412Z",
        "data": {"lead_id": "00Q000000000042AAA", "emails": ["jane@acme.example"], "fields": {"Title": "CRO"},
                 "converted": True, "converted_contact_id": "003000000000001AAA",
                 "system_modstamp": "2026-11-26T18:03:00.412Z", "deleted": False}}


def test_given_lead_changes_when_the_cycle_query_is_built_then_it_reads_conversion_fields_from_lead():
    soql = changes_query(selected_fields(["Email"], ["Title", "Company"], LEAD_BASE_FIELDS), 0, "Lead")
    assert soql == ("SELECT Id, IsDeleted, SystemModstamp, CreatedDate, IsConverted, ConvertedContactId, Email, "
                    "Title, Company FROM Lead WHERE SystemModstamp > 1970-01-01T00:00:00.000Z "
                    "ORDER BY SystemModstamp, Id")


ADDRESSES = ["a@x.example", "b@x.example", "c@x.example"]
leads_strategy = st.lists(st.builds(
    lambda n, address, created, converted: lead(f"00Q{n:03d}", address, created,
                                                 f"003{n:03d}" if converted else None),
    st.integers(0, 999), st.sampled_from(ADDRESSES + [a.upper() for a in ADDRESSES]),
    st.sampled_from([OLD, NEW]), st.booleans()), max_size=6, unique_by=lambda r: r["Id"])


@settings(max_examples=300, deadline=None)
@given(leads=leads_strategy, addresses=st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3, unique=True))
def test_property_a_converted_lead_is_never_written_to_and_its_contact_wins(leads, addresses):
    chosen = choose_lead(addresses, leads, FIELDS)
    matching = [r for r in leads if r["Email"].lower() in addresses]
    if not matching:
        assert chosen is None
    elif any(r["IsConverted"] for r in matching):
        assert chosen is not None and chosen[0] == "Contact" and chosen[1]["Id"].startswith("003")
    else:
        assert chosen is not None and chosen[0] == "Lead" and not chosen[1]["IsConverted"]
    # the same leads in another order choose the same record
    assert choose_lead(addresses, list(reversed(leads)), FIELDS) == chosen

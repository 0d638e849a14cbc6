"""The mapping config: loading with clear errors, checking against describe, converting values."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from schemas.events import SEQUENCE_STATUSES
from schemas.mappings import FieldMapping, MappingConfig
from workers.cli import exits
from workers.sync.mappings import (
    TRUNCATION_MARKER,
    MappingConfigError,
    convert_value,
    load_mappings,
    truncate_text,
    usable_mappings,
    validate_mappings,
)


# --- hand-made describe ----------------------------------------------------------------------

def field(name, ftype="string", length=255, *, createable=True, updateable=True, values=(),
          restricted=False, **extra):
    return {"name": name, "type": ftype, "length": length, "createable": createable,
            "updateable": updateable, "nillable": True, "restrictedPicklist": restricted,
            "picklistValues": [{"value": v, "label": v, "active": True} for v in values], **extra}


CONTACT = {"name": "Contact", "createable": True, "fields": [
    field("Id", "id", 18, createable=False, updateable=False),
    field("FirstName", length=40), field("LastName", length=80), field("Email", "email", 80),
    field("Title", length=128), field("Phone", "phone", 40),
    field("MailingCountry", length=80),
    field("MailingCountryCode", "picklist", 10, values=("DE", "US", "GB", "FR"), restricted=True),
    field("Product_Interest__c", "multipicklist", 4099, values=("A", "B"), restricted=True),
    field("HasOptedOutOfEmail", "boolean", 0),
    field("Birthdate", "date", 0),
    field("AccountId", "reference", 18),
    field("Name", length=121, createable=False, updateable=False, calculated=True),
    field("Legacy_Code__c", length=20, updateable=False),
    field("Locked__c", length=20, createable=False),
    field("Secondary_Email__c", "email", 80),
    field("Notes__c", "textarea", 32000, filterable=False),
    field("Unify_Sequence_Status__c", "picklist", 255, values=SEQUENCE_STATUSES, restricted=True),
    field("Short_Status__c", "picklist", 255, values=("Completed", "Bounced"), restricted=True),
    field("Tiny_Status__c", length=10),
]}
TASK = {"name": "Task", "createable": True, "fields": [field("Subject", "combobox"),
                                                       field("Unify_Play__c", length=80)]}
LEAD = {"name": "Lead", "createable": True, "fields": [
    field("Id", "id", 18, createable=False, updateable=False),
    field("FirstName", length=40), field("LastName", length=80), field("Email", "email", 80),
    field("Company", length=255), field("Title", length=128), field("Phone", "phone", 40),
    field("Country", length=80), field("CountryCode", "picklist", 10, values=("DE", "US"), restricted=True),
    field("Product_Interest__c", "multipicklist", 4099, values=("A", "B"), restricted=True),
    field("Unify_Sequence_Status__c", "picklist", 255, values=SEQUENCE_STATUSES, restricted=True),
    field("Short_Status__c", "picklist", 255, values=("Completed", "Bounced"), restricted=True),
    field("IsConverted", "boolean", 0, createable=False, updateable=False),
]}
ORG = {"Contact": CONTACT, "Lead": LEAD, "Task": TASK, "EmailMessage": {"name": "EmailMessage", "fields": [
    field("Unify_Sequence__c", length=80)]}}


def org(name):
    return ORG.get(name)


def no_enhanced_email(name):
    return None if name == "EmailMessage" else ORG.get(name)


def config(*mappings, alternates=(), task=(), email_message=()) -> MappingConfig:
    return MappingConfig.model_validate({
        "contact": {"fields": [dict(zip(("source", "target", "policy"), m)) for m in mappings],
                    "alternate_email_fields": list(alternates)},
        "task": {"fields": [dict(zip(("source", "target", "policy"), m)) for m in task]},
        "email_message": {"fields": [dict(zip(("source", "target", "policy"), m)) for m in email_message]},
    }).model_copy(update={"origin": "test.yaml"})


def only_problem(problems):
    assert len(problems) == 1, problems
    return problems[0]


# --- loading ---------------------------------------------------------------------------------

def test_given_no_file_when_loaded_then_defaults_map_only_standard_contact_fields():
    defaults = load_mappings(None)
    assert defaults.is_default
    assert [(m.source, m.target, m.policy) for m in defaults.contact.fields] == [
        ("first_name", "FirstName", "fill_blank"), ("last_name", "LastName", "fill_blank"),
        ("title", "Title", "fill_blank"), ("phone", "Phone", "fill_blank"),
        ("country", "MailingCountryCode", "fill_blank")]
    assert not any(m.target.endswith("__c") for m in defaults.contact.fields)
    assert defaults.task.fields == [] and defaults.email_message.fields == []
    assert defaults.contact.missing_last_name == "[not provided]"


def test_given_a_yaml_file_when_loaded_then_its_sections_replace_the_defaults(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("contact:\n  fields:\n"
                    "    - {source: sequence_status, target: Unify_Sequence_Status__c, policy: always}\n"
                    "  alternate_email_fields: [Secondary_Email__c, Email]\n"
                    "task:\n  fields:\n    - {source: play_name, target: Unify_Play__c}\n")
    loaded = load_mappings(path)
    assert loaded.origin == str(path) and not loaded.is_default
    assert loaded.contact.fields == [FieldMapping(source="sequence_status", target="Unify_Sequence_Status__c",
                                                  policy="always")]
    assert loaded.contact.alternate_email_fields == ["Secondary_Email__c"]  # Email is always searched
    assert loaded.task.fields[0].policy == "fill_blank"


def test_given_a_json_file_when_loaded_then_same_model(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"contact": {"fields": [{"source": "title", "target": "Title"}]}}))
    assert load_mappings(path).contact.fields == [FieldMapping(source="title", target="Title")]


def test_given_an_empty_file_when_loaded_then_every_section_is_default(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("# nothing yet\n")
    assert load_mappings(path).contact == MappingConfig().contact


def test_given_extra_person_fields_when_loaded_then_accepted_and_person_prefix_of_known_ones_dropped():
    loaded = config(("person.linkedin_url", "LinkedIn__c"), ("person.title", "Title"))
    assert [m.source for m in loaded.contact.fields] == ["person.linkedin_url", "title"]


def test_given_a_missing_file_when_loaded_then_the_error_names_it(tmp_path):
    with pytest.raises(MappingConfigError, match=r"nope\.yaml: cannot read the file"):
        load_mappings(tmp_path / "nope.yaml")


def test_given_broken_yaml_when_loaded_then_the_error_names_file_and_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("contact:\n  fields: [\n    {source: title, target: Title\n")
    with pytest.raises(MappingConfigError) as caught:
        load_mappings(path)
    assert str(caught.value).startswith(f"{path}: line 4 column 1: invalid YAML")


def test_given_broken_json_when_loaded_then_the_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"contact": {\n  "fields": [,]}}')
    with pytest.raises(MappingConfigError, match=r"m\.json: line 2 column 14: invalid JSON"):
        load_mappings(path)


@pytest.mark.parametrize("entry, expected", [
    ("{source: titel, target: Title}",
     "line 3, contact.fields[0].source: unknown source 'titel'; did you mean 'title'?"),
    ("{source: title, target: Title, policy: sometimes}",
     "line 3, contact.fields[0].policy: unknown policy; use one of fill_blank, always, on_create, never"),
    ("{source: title, target: Title, polcy: always}", "line 3, contact.fields[0].polcy: unknown key"),
    ("{source: title, target: 'Title, Id FROM User'}",
     "line 3, contact.fields[0].target: Value error, 'Title, Id FROM User' is not a Salesforce field API name"),
    ("{source: title, target: Email}", "line 3, contact.fields[0].target: Email is written by sfsync itself"),
    ("{target: Title}", "line 3, contact.fields[0].source: Field required"),
])
def test_given_a_bad_entry_when_loaded_then_the_error_names_line_field_and_reason(tmp_path, entry, expected):
    path = tmp_path / "m.yaml"
    path.write_text(f"contact:\n  fields:\n    - {entry}\n")
    with pytest.raises(MappingConfigError) as caught:
        load_mappings(path)
    assert str(caught.value).startswith(f"{path}: {expected}".replace("Value error, ", ""))


def test_given_a_field_mapped_twice_in_another_case_when_loaded_then_the_second_entry_is_named(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("contact:\n  fields:\n    - {source: title, target: Title}\n"
                    "    - {source: company, target: title}\n")
    with pytest.raises(MappingConfigError, match=r"line 4, contact\.fields\[1\]\.target: title is mapped "
                                                 r"more than once"):
        load_mappings(path)


def test_given_a_task_field_sfsync_writes_when_loaded_then_refused():
    with pytest.raises(ValueError, match="Description is written by sfsync itself"):
        config(task=[("subject", "Description")])
    with pytest.raises(ValueError, match="whoid is written by sfsync itself"):
        config(task=[("subject", "whoid")])


def test_given_several_errors_when_loaded_then_all_are_listed_one_per_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("contact:\n  fields:\n    - {source: x, target: Title}\n  typo: 1\n")
    with pytest.raises(MappingConfigError) as caught:
        load_mappings(path)
    assert caught.value.problems[0].startswith("line 3, contact.fields[0].source: unknown source 'x'")
    assert caught.value.problems[1] == "line 4, contact.typo: unknown key (check its spelling)"
    assert str(caught.value).count("\n  ") == 2


# --- validating against describe -------------------------------------------------------------

def test_given_a_sound_config_when_validated_then_no_problems():
    sound = config(("first_name", "FirstName"), ("country", "MailingCountryCode"),
                   ("sequence_status", "Unify_Sequence_Status__c", "always"),
                   ("title", "Legacy_Code__c", "on_create"),
                   alternates=["Secondary_Email__c"], task=[("play_name", "Unify_Play__c")],
                   email_message=[("sequence_name", "Unify_Sequence__c")])
    assert validate_mappings(sound, org) == []


def test_given_an_unknown_field_when_validated_then_problem_with_a_close_match():
    problem = only_problem(validate_mappings(config(("title", "Titel")), org))
    assert (problem.object, problem.field, problem.source, problem.severity) == ("Contact", "Titel", "title", "error")
    assert problem.reason == "Contact has no field Titel"
    assert problem.hint == "did you mean Title?"


def test_given_a_field_in_another_case_when_validated_then_found():
    assert validate_mappings(config(("title", "TITLE")), org) == []


@pytest.mark.parametrize("target, ftype", [("HasOptedOutOfEmail", "boolean"), ("Birthdate", "date"),
                                           ("AccountId", "reference")])
def test_given_a_text_source_into_a_non_text_field_when_validated_then_type_mismatch(target, ftype):
    problem = only_problem(validate_mappings(config(("title", target)), org))
    assert problem.reason == f"type mismatch: title is text but {target} is a {ftype} field"


def test_given_a_rep_user_id_into_a_reference_field_when_validated_then_accepted():
    assert validate_mappings(config(("rep_salesforce_user_id", "AccountId")), org) == []


def test_given_a_field_not_createable_when_validated_then_problem():
    problem = only_problem(validate_mappings(config(("title", "Locked__c", "on_create")), org))
    assert problem.reason == "Locked__c is not createable by the integration user"


@pytest.mark.parametrize("policy", ["fill_blank", "always"])
def test_given_a_create_only_field_when_the_policy_updates_then_problem(policy):
    problem = only_problem(validate_mappings(config(("title", "Legacy_Code__c", policy)), org))
    assert problem.reason == f"Legacy_Code__c is not updateable, which policy {policy} needs"
    assert "on_create" in problem.hint


def test_given_a_calculated_field_when_validated_then_problem():
    problem = only_problem(validate_mappings(config(("company", "Name")), org))
    assert problem.reason == "Name is calculated by Salesforce and can't be written"


def test_given_a_multi_select_picklist_when_validated_then_refused():
    problem = only_problem(validate_mappings(config(("title", "Product_Interest__c")), org))
    assert problem.reason == "multi-select picklists are not supported and cause sync failures"


def test_given_mailing_country_when_validated_then_refused_with_the_country_code_hint():
    problem = only_problem(validate_mappings(config(("country", "MailingCountry")), org))
    assert problem.reason == "MailingCountry is a free-text field and is not supported for country data"
    assert problem.hint.startswith("map to MailingCountryCode instead")


def test_given_a_status_picklist_missing_values_when_validated_then_the_missing_values_are_named():
    problem = only_problem(validate_mappings(config(("sequence_status", "Short_Status__c", "always")), org))
    missing = [s for s in SEQUENCE_STATUSES if s not in ("Completed", "Bounced")]
    assert problem.reason == ("the restricted picklist lacks Unify sequence status values: " + ", ".join(missing))
    assert "sfsync mappings picklist-values" in problem.hint


def test_given_a_status_text_field_too_short_when_validated_then_problem():
    problem = only_problem(validate_mappings(config(("sequence_status", "Tiny_Status__c", "always")), org))
    assert problem.reason == "Tiny_Status__c holds 10 characters; the longest sequence status has 30"


@pytest.mark.parametrize("name, reason", [
    ("Title", None),
    ("Phone", "alternate email field Phone is a phone field, not email or text"),
    ("Notes__c", "alternate email field Notes__c is a textarea field, not email or text"),
    ("Nope__c", "Contact has no field Nope__c"),
])
def test_given_alternate_email_fields_when_validated_then_only_email_or_text_fields_pass(name, reason):
    problems = validate_mappings(config(alternates=[name]), org)
    assert [p.reason for p in problems] == ([reason] if reason else [])


def test_given_a_text_alternate_that_is_not_filterable_when_validated_then_problem():
    describe = {**CONTACT, "fields": [field("Alt__c", filterable=False)]}
    problem = only_problem(validate_mappings(config(alternates=["Alt__c"]),
                                             lambda n: describe if n == "Contact" else org(n)))
    assert problem.reason == "Alt__c can't be used in a SOQL WHERE clause (not filterable)"


def test_given_email_message_mappings_without_enhanced_email_when_validated_then_a_warning():
    problem = only_problem(validate_mappings(config(email_message=[("sequence_name", "Unify_Sequence__c")]),
                                             no_enhanced_email))
    assert (problem.object, problem.field, problem.severity) == ("EmailMessage", "*", "warning")
    assert problem.reason == "the org has no EmailMessage object (Enhanced Email is off)"


def test_given_a_never_mapping_when_validated_then_it_is_not_checked():
    assert validate_mappings(config(("title", "Nope__c", "never")), org) == []


def test_given_the_defaults_in_an_org_without_country_picklists_when_validated_then_warnings_and_dropped():
    plain = {**CONTACT, "fields": [f for f in CONTACT["fields"] if f["name"] != "MailingCountryCode"]}
    defaults = load_mappings(None)
    problems = validate_mappings(defaults, lambda n: plain if n == "Contact" else ORG.get(n))
    assert [(p.field, p.severity) for p in problems] == [("MailingCountryCode", "warning")]
    usable = usable_mappings(defaults, problems)
    assert [m.target for m in usable.contact.fields] == ["FirstName", "LastName", "Title", "Phone"]


def test_given_a_problem_when_printed_then_it_reads_as_one_line():
    problem = only_problem(validate_mappings(config(("title", "Titel")), org))
    assert str(problem) == "Contact.Titel (from title): Contact has no field Titel; did you mean Title?"


# --- converting values -----------------------------------------------------------------------

COUNTRY = field("MailingCountryCode", "picklist", 10, values=("DE", "US", "GB", "FR", "NL", "TR"), restricted=True)


@pytest.mark.parametrize("value, code", [
    ("Germany", "DE"), ("DE", "DE"), ("de", "DE"), ("deu", "DE"), ("DEU", "DE"),
    ("United States", "US"), ("USA", "US"), ("U.S.A.", "US"), ("united  states", "US"),
    ("UK", "GB"), ("United Kingdom", "GB"), ("Great Britain", "GB"),
    ("France", "FR"), ("The Netherlands", "NL"), ("Turkey", "TR"),
])
def test_given_a_country_name_or_code_when_converted_then_iso_alpha_2(value, code):
    assert convert_value("country", value, COUNTRY) == (code, None)


@pytest.mark.parametrize("value", ["Narnia", "xx", "Korea", "Mars"])
def test_given_an_unknown_or_ambiguous_country_when_converted_then_left_out_with_a_warning(value):
    converted, warning = convert_value("country", value, COUNTRY)
    assert converted is None
    assert warning == f"MailingCountryCode left out: country {value!r} is not a recognised country"


def test_given_a_country_the_org_picklist_lacks_when_converted_then_left_out_with_a_warning():
    converted, warning = convert_value("country", "Japan", COUNTRY)
    assert converted is None
    assert warning == "MailingCountryCode left out: country 'JP' is not a value of the restricted picklist"


def test_given_no_describe_when_a_country_code_field_is_converted_then_still_iso():
    assert convert_value("country", "Germany", {"name": "MailingCountryCode"}) == ("DE", None)


def test_given_a_country_into_a_text_field_when_converted_then_kept_as_written():
    assert convert_value("country", "Germany", field("Country__c", length=80)) == ("Germany", None)


@pytest.mark.parametrize("name, length", [("FirstName", 40), ("LastName", 80), ("Title", 128),
                                          ("Subject", 255), ("Description", 32_000)])
def test_given_text_longer_than_the_field_when_converted_then_cut_with_a_marker(name, length):
    converted, warning = convert_value("title", "x" * (length + 1), field(name, length=length))
    assert len(converted) == length and converted.endswith(TRUNCATION_MARKER)
    assert warning == f"{name} truncated to {length} characters"
    assert convert_value("title", "x" * length, field(name, length=length)) == ("x" * length, None)


def test_given_a_limit_shorter_than_the_marker_when_truncated_then_a_hard_cut():
    assert truncate_text("abcdefghijklmnop", 5) == ("abcde", True)
    assert truncate_text("abc", 0) == ("abc", False)


def test_given_an_email_or_phone_too_long_when_converted_then_left_out_not_cut():
    assert convert_value("rep_email", "a" * 80 + "@x.example", field("Rep__c", "email", 80))[0] is None
    converted, warning = convert_value("phone", "1" * 41, field("Phone", "phone", 40))
    assert converted is None and warning == "Phone left out: phone is 41 characters; Phone holds 40"


def test_given_a_restricted_picklist_value_when_converted_then_the_org_spelling_or_left_out():
    status = field("Status__c", "picklist", 255, values=SEQUENCE_STATUSES, restricted=True)
    assert convert_value("sequence_status", "completed", status) == ("Completed", None)
    converted, warning = convert_value("sequence_status", "Snoozed", status)
    assert converted is None
    assert warning == "Status__c left out: sequence_status 'Snoozed' is not a value of the restricted picklist"


def test_given_an_open_picklist_when_converted_then_any_value_passes():
    open_list = field("Status__c", "picklist", 255, values=("Completed",))
    assert convert_value("sequence_status", "Snoozed", open_list) == ("Snoozed", None)


@pytest.mark.parametrize("value, expected", [(True, True), ("yes", True), ("FALSE", False), ("0", False),
                                             (1, True)])
def test_given_boolean_like_values_when_converted_then_booleans(value, expected):
    assert convert_value("person.vip", value, field("VIP__c", "boolean", 0)) == (expected, None)


def test_given_a_non_boolean_when_converted_then_left_out_with_a_warning():
    assert convert_value("person.vip", "maybe", field("VIP__c", "boolean", 0)) == (
        None, "VIP__c left out: person.vip 'maybe' is not true/false")


def test_given_numbers_when_converted_then_numbers_or_warnings():
    assert convert_value("sequence_step", "3", field("Step__c", "int", 0)) == (3, None)
    assert convert_value("sequence_step", 2.0, field("Step__c", "double", 0)) == (2.0, None)
    assert convert_value("sequence_step", "2.5", field("Step__c", "int", 0))[0] is None
    assert convert_value("sequence_step", "two", field("Step__c", "double", 0)) == (
        None, "Step__c left out: sequence_step 'two' is not a number")


def test_given_dates_when_converted_then_iso_in_utc():
    sent = datetime(2026, 11, 26, 23, 30, 0, 412000, tzinfo=timezone.utc)
    assert convert_value("sent_at", sent, field("Sent__c", "datetime", 0)) == ("2026-11-26T23:30:00.412Z", None)
    assert convert_value("sent_at", "2026-11-27T01:30:00+02:00", field("Day__c", "date", 0)) == ("2026-11-26", None)
    assert convert_value("sent_at", "soon", field("Day__c", "date", 0)) == (
        None, "Day__c left out: sent_at 'soon' is not a date")


def test_given_ids_when_converted_into_a_reference_then_only_salesforce_ids_pass():
    user = field("Rep__c", "reference", 18)
    assert convert_value("rep_salesforce_user_id", "005000000000001AAA", user) == ("005000000000001AAA", None)
    assert convert_value("rep_salesforce_user_id", "riley", user)[0] is None


def test_given_a_multi_select_or_null_or_blank_when_converted_then_left_out():
    multi = field("Product_Interest__c", "multipicklist", 4099, values=("A",))
    assert convert_value("title", "A", multi) == (None, ("Product_Interest__c left out: multi-select picklists "
                                                         "are not supported"))
    assert convert_value("title", None, field("Title")) == (None, None)
    assert convert_value("title", "  ", field("Title")) == (None, None)


# --- the CLI without Salesforce --------------------------------------------------------------

def test_given_the_picklist_command_when_run_then_every_status_one_per_line_or_json():
    from click.testing import CliRunner

    from workers.cli.mappings import mappings

    runner = CliRunner()
    assert runner.invoke(mappings, ["picklist-values"]).output.splitlines() == list(SEQUENCE_STATUSES)
    assert json.loads(runner.invoke(mappings, ["picklist-values", "--json"]).output) == list(SEQUENCE_STATUSES)


def test_given_a_bad_file_when_validated_offline_then_exit_1_with_the_reasons(tmp_path):
    from click.testing import CliRunner

    from workers.cli.mappings import mappings

    path = tmp_path / "m.yaml"
    path.write_text("contact:\n  fields:\n    - {source: titel, target: Title}\n")
    result = CliRunner().invoke(mappings, ["validate", "--offline", "--json", "--file", str(path)])
    assert result.exit_code == exits.DATA
    assert json.loads(result.output)["errors"][0].startswith("line 3, contact.fields[0].source: unknown source")
    path.write_text("contact:\n  fields:\n    - {source: title, target: Title}\n")
    clean = CliRunner().invoke(mappings, ["validate", "--offline", "--file", str(path)])
    assert clean.exit_code == 0 and "OK" in clean.output

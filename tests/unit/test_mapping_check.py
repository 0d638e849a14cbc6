"""Splitting mapping problems by severity, one way for the CLI, the worker's start-up and a console."""

from __future__ import annotations

from schemas.mappings import FieldMapping, MappingConfig
from workers.sync.mappings import MappingProblem, errors_and_warnings, validate_mappings


def problem(field: str, severity: str) -> MappingProblem:
    return MappingProblem("Contact", field, None, "does not fit", severity=severity)


def test_given_mixed_problems_when_split_then_errors_and_warnings_keep_their_order():
    problems = [problem("A", "warning"), problem("B", "error"), problem("C", "warning"), problem("D", "error")]

    errors, warnings = errors_and_warnings(problems)

    assert [p.field for p in errors] == ["B", "D"]
    assert [p.field for p in warnings] == ["A", "C"]


def test_given_no_problems_when_split_then_both_are_empty():
    assert errors_and_warnings(iter(())) == ([], [])


def test_given_a_configured_mapping_to_a_missing_field_when_checked_then_one_error_and_no_output(capsys):
    config = MappingConfig.model_validate(
        {"contact": {"fields": [{"source": "title", "target": "Titel__c"}]}}).model_copy(
        update={"origin": "mappings.yaml"})
    contact = {"name": "Contact", "fields": [{"name": "Title__c", "type": "string", "length": 80,
                                              "createable": True, "updateable": True}]}

    errors, warnings = errors_and_warnings(validate_mappings(config, {"Contact": contact}.get))

    assert [(p.field, p.hint) for p in errors] == [("Titel__c", "did you mean Title__c?")]
    assert warnings == []
    assert capsys.readouterr() == ("", "")


def test_given_the_built_in_defaults_when_a_field_is_missing_then_it_is_only_a_warning():
    contact = {"name": "Contact", "fields": [{"name": n, "type": "string", "length": 80, "createable": True,
                                              "updateable": True}
                                             for n in ("FirstName", "LastName", "Title", "Phone")]}

    errors, warnings = errors_and_warnings(validate_mappings(MappingConfig(), {"Contact": contact}.get))

    assert errors == []
    assert [p.field for p in warnings] == ["MailingCountryCode"]
    assert FieldMapping(source="country", target="MailingCountryCode") in MappingConfig().contact.fields

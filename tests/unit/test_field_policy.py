"""The never-overwrite rule: which mapped fields reach an existing or a new record."""

from __future__ import annotations

import copy

import pytest

from workers.sync.field_policy import apply_field_policy, is_blank


def test_given_a_non_blank_title_when_fill_blank_then_it_survives():
    writes = apply_field_policy({"Title": "Head of Sales"}, {"Title": "VP Sales"}, {"Title": "fill_blank"})
    assert writes == {}


@pytest.mark.parametrize("current", [None, "", "   ", "\t\n"])
def test_given_a_null_or_blank_title_when_fill_blank_then_it_is_filled(current):
    writes = apply_field_policy({"Title": current}, {"Title": "VP Sales"}, {"Title": "fill_blank"})
    assert writes == {"Title": "VP Sales"}


def test_given_a_field_missing_from_the_record_when_fill_blank_then_it_counts_as_null():
    assert apply_field_policy({"Id": "003"}, {"Title": "VP"}, {"Title": "fill_blank"}) == {"Title": "VP"}


def test_given_an_always_field_with_another_value_when_updated_then_written():
    writes = apply_field_policy({"Status__c": "In Progress - Started"}, {"Status__c": "Completed"},
                                {"Status__c": "always"})
    assert writes == {"Status__c": "Completed"}


def test_given_an_always_field_with_the_same_value_when_updated_then_not_written_again():
    assert apply_field_policy({"Status__c": "Completed"}, {"Status__c": "Completed"},
                              {"Status__c": "always"}) == {}


def test_given_an_on_create_field_when_updating_then_ignored_even_if_blank():
    assert apply_field_policy({"LeadSource": None}, {"LeadSource": "Unify"}, {"LeadSource": "on_create"}) == {}


def test_given_an_on_create_field_when_creating_then_written():
    assert apply_field_policy(None, {"LeadSource": "Unify"}, {"LeadSource": "on_create"}) == {"LeadSource": "Unify"}


@pytest.mark.parametrize("current", [None, {"Phone": None}, {"Phone": "+49 1"}])
def test_given_a_never_field_when_creating_or_updating_then_never_written(current):
    assert apply_field_policy(current, {"Phone": "+1 555"}, {"Phone": "never"}) == {}


def test_given_a_create_when_policies_mixed_then_every_field_but_never_is_written():
    desired = {"A": 1, "B": 2, "C": 3, "D": 4}
    policies = {"A": "fill_blank", "B": "always", "C": "on_create", "D": "never"}
    assert apply_field_policy(None, desired, policies) == {"A": 1, "B": 2, "C": 3}


def test_given_no_policy_for_a_field_when_updating_then_fill_blank_applies():
    assert apply_field_policy({"Title": "CEO"}, {"Title": "VP"}, {}) == {}
    assert apply_field_policy({"Title": ""}, {"Title": "VP"}, {}) == {"Title": "VP"}


def test_given_a_mapping_spelled_in_another_case_when_updating_then_the_current_value_is_still_seen():
    # Salesforce returns "Title"; a mapping target "title" must not see it as blank and overwrite it
    assert apply_field_policy({"Title": "CEO"}, {"title": "VP"}, {"title": "fill_blank"}) == {}


def test_given_a_boolean_false_when_fill_blank_then_not_blank():
    assert not is_blank(False)
    assert apply_field_policy({"Flag__c": False}, {"Flag__c": True}, {"Flag__c": "fill_blank"}) == {}


def test_given_inputs_when_policy_applied_then_they_are_not_mutated():
    current, desired, policies = {"Title": ""}, {"Title": "VP"}, {"Title": "fill_blank"}
    before = copy.deepcopy((current, desired, policies))
    apply_field_policy(current, desired, policies)
    assert (current, desired, policies) == before

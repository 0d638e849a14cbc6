"""Contact resolution's pure half: escaped SOQL, and one deterministic choice among matches."""

from __future__ import annotations

import itertools

import pytest
from simple_salesforce import format_soql

from workers.sync.resolve import choose_contact, contact_query, email_fields, index_entries

FIELDS = ["Email", "Secondary_Email__c"]


def test_given_email_and_an_alternate_field_when_query_built_then_both_are_searched_with_one_slot():
    template = contact_query(FIELDS, ["Title", "LastName"])
    assert template == ("SELECT Id, CreatedDate, Email, Secondary_Email__c, Title, LastName FROM Contact "
                        "WHERE Email IN {values} OR Secondary_Email__c IN {values}")


def test_given_injection_and_special_characters_when_filled_by_format_soql_then_each_is_one_literal():
    template = contact_query(["Email"])
    soql = format_soql(template, values=["x' OR Email != '", "o'brien@x.example", "a%b_c@x.example",
                                         "back\\slash@x.example", 'q"uote@x.example'])
    assert soql == ("SELECT Id, CreatedDate, Email FROM Contact WHERE Email IN "
                    "('x\\' OR Email != \\'','o\\'brien@x.example','a%b_c@x.example',"
                    "'back\\\\slash@x.example','q\\\"uote@x.example')")


def test_given_an_injection_string_when_filled_then_no_unescaped_quote_closes_the_literal():
    soql = format_soql(contact_query(["Email"]), values=["x' OR Email != '"])
    literal = soql.split(" IN ", 1)[1]
    # every quote inside the single literal is escaped: the only bare quotes are its two ends
    bare = [i for i, ch in enumerate(literal) if ch == "'" and literal[i - 1] != "\\"]
    assert bare == [1, len(literal) - 2]


@pytest.mark.parametrize("bad", ["Email, (SELECT Id FROM User)", "Email--", "1Email", "Email IN {x}"])
def test_given_a_field_name_that_is_no_api_name_when_query_built_then_refused(bad):
    with pytest.raises(ValueError, match="not a Salesforce field API name"):
        contact_query(["Email", bad])


def test_given_alternates_that_repeat_email_when_listed_then_email_comes_first_once():
    assert email_fields(["email", "Alt__c", "alt__c"]) == ["Email", "Alt__c"]


def test_given_a_contact_in_another_case_when_chosen_then_matched_case_insensitively():
    contact = {"Id": "003A", "Email": "Jane.Doe@ACME.example", "CreatedDate": "2026-01-01T00:00:00.000+0000"}
    assert choose_contact(["jane.doe@acme.example"], [contact], FIELDS) is contact


def test_given_a_contact_without_email_when_chosen_then_never_matched():
    blank = {"Id": "003A", "Email": None, "Secondary_Email__c": "  "}
    assert choose_contact(["jane@acme.example", ""], [blank], FIELDS) is None


def test_given_no_common_address_when_chosen_then_none():
    assert choose_contact(["jane@acme.example"], [{"Id": "003A", "Email": "joe@acme.example"}], FIELDS) is None


def test_given_two_contacts_when_one_matches_an_earlier_address_then_it_wins():
    work = {"Id": "003B", "Email": "jane@acme.example", "CreatedDate": "2026-05-01T00:00:00.000+0000"}
    home = {"Id": "003A", "Email": "jane@home.example", "CreatedDate": "2020-01-01T00:00:00.000+0000"}
    assert choose_contact(["jane@acme.example", "jane@home.example"], [home, work], FIELDS) is work


def test_given_the_same_address_on_email_and_on_an_alternate_when_chosen_then_email_wins():
    by_alt = {"Id": "003A", "Email": "other@x.example", "Secondary_Email__c": "jane@acme.example",
              "CreatedDate": "2020-01-01T00:00:00.000+0000"}
    by_email = {"Id": "003B", "Email": "jane@acme.example", "CreatedDate": "2026-01-01T00:00:00.000+0000"}
    assert choose_contact(["jane@acme.example"], [by_alt, by_email], FIELDS) is by_email


def test_given_equal_matches_when_chosen_then_the_oldest_wins_then_the_lowest_id():
    old = {"Id": "003C", "Email": "jane@acme.example", "CreatedDate": "2024-01-01T00:00:00.000+0000"}
    new = {"Id": "003A", "Email": "jane@acme.example", "CreatedDate": "2025-01-01T00:00:00.000+0000"}
    twin = {"Id": "003B", "Email": "JANE@acme.example", "CreatedDate": "2024-01-01T00:00:00.000+0000"}
    assert choose_contact(["jane@acme.example"], [new, old, twin], FIELDS) is twin


def test_given_several_matches_in_any_order_when_chosen_then_always_the_same_contact():
    contacts = [
        {"Id": "003D", "Email": "jane@home.example", "CreatedDate": "2019-01-01T00:00:00.000+0000"},
        {"Id": "003C", "Email": "x@y.example", "Secondary_Email__c": "jane@acme.example",
         "CreatedDate": "2018-01-01T00:00:00.000+0000"},
        {"Id": "003B", "Email": "jane@acme.example", "CreatedDate": "2023-01-01T00:00:00.000+0000"},
        {"Id": "003A", "Email": "jane@acme.example", "CreatedDate": "2023-01-01T00:00:00.000+0000"},
        {"Id": "003E", "Email": None},
    ]
    chosen = {choose_contact(["jane@acme.example", "jane@home.example"], list(order), FIELDS)["Id"]
              for order in itertools.permutations(contacts)}
    assert chosen == {"003A"}


def test_given_a_contact_when_indexed_then_its_lower_cased_addresses_without_repeats():
    contact = {"Id": "003A", "Email": " Jane@Acme.example ", "secondary_email__c": "JANE@acme.example"}
    assert index_entries(contact, FIELDS) == ["jane@acme.example"]
    assert index_entries({"Id": "003B", "Email": None}, FIELDS) == []

"""Dead letters grouped by cause: the message pattern, the cause key and the grouping, without Redis."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from events.dlq_causes import SPARK_HOURS, Cause, cause_of, describe, group_bucket, index_entry, pattern_of


@pytest.mark.parametrize("message, pattern", [
    ("Subject must not contain 'ACME-123'", "Subject must not contain '…'"),
    ('Title: bad value for restricted picklist field: "Chief Wizard"', ("Title: bad value for restricted picklist "
                                                                        "field: '…'")),
    ("duplicate value found: Unify_Event_Id__c duplicates value on record with id: 00T5g000000000HEAQ",
     "duplicate value found: Unify_Event_Id__c duplicates value on record with id: <id>"),
    ("entity is deleted: 0035g00000ABCDe", "entity is deleted: <id>"),
    ("no contact for jane.doe@acme.example or o'brien@x.example", "no contact for <email> or <email>"),
    ("reply to <CAF1x9@mail.unify.example> not found", "reply to <message-id> not found"),
    ("event evt_01JDX6K8T3 failed 8 times in 3600.5 s", "event <id> failed <n> times in <n> s"),
    ("sent at 2026-11-26T18:03:00.412Z, retry after 2026-11-27", "sent at <time>, retry after <time>"),
    ("see https://acme.my.salesforce.com/0035g00000ABCDe?x=1 now", "see <url> now"),
    ("task 20adcf63-ffd7-46bc-9c2d-35f376c3b8b7 lost", "task <id> lost"),
    ("Required fields are missing: [LastName]", "Required fields are missing: [LastName]"),
    ("  spread \n over   lines ", "spread over lines"),
])
def test_what_varies_between_letters_of_one_cause_becomes_a_placeholder(message, pattern):
    assert pattern_of(message) == pattern


def test_words_and_error_codes_stay_as_they_are():
    text = "FIELD_CUSTOM_VALIDATION_EXCEPTION: Internationalization of MailingCountryCode refused"
    assert pattern_of(text) == text


@given(st.text(max_size=400))
def test_the_pattern_of_a_pattern_is_itself(message):
    once = pattern_of(message)
    assert pattern_of(once) == once
    assert len(once) <= 300


@given(st.integers(min_value=0, max_value=10**9), st.text(alphabet="abcdefXYZ ", max_size=20))
def test_letters_differing_in_a_number_or_a_quoted_value_share_a_cause(number, quoted):
    a = cause_of("ws_acme", "FIELD_CUSTOM_VALIDATION_EXCEPTION", ["Subject"], f"row {number} has '{quoted}'")
    b = cause_of("ws_acme", "FIELD_CUSTOM_VALIDATION_EXCEPTION", ["Subject"], "row 7 has 'other'")
    assert a.key == b.key


def test_workspace_code_and_fields_each_separate_causes():
    base = cause_of("ws_a", "X", ["Subject"], "m")
    assert len({base.key, cause_of("ws_b", "X", ["Subject"], "m").key, cause_of("ws_a", "Y", ["Subject"], "m").key,
                cause_of("ws_a", "X", ["Title"], "m").key, cause_of("ws_a", "X", ["Subject"], "n").key}) == 5
    # the order (and repeats) of fields do not
    assert cause_of("ws_a", "X", ["B", "A", "A"], "m") == cause_of("ws_a", "X", ["A", "B"], "m")
    assert cause_of(None, "X", [], "m") == Cause("", "X", "", "m")


def test_grouping_counts_letters_first_and_last_seen_and_the_hourly_sparkline():
    now = 100_000.0
    subject = cause_of("ws_acme", "FIELD_CUSTOM_VALIDATION_EXCEPTION", ["Subject"], "Subject has 'x'")
    title = cause_of("ws_acme", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Title"], "Title: bad value: 'y'")
    timed = [("dl_1", now - 7200.5), ("dl_2", now - 30), ("dl_3", now - 10), ("dl_4", now - 5)]
    index = {"dl_1": index_entry(subject, now - 9000), "dl_2": index_entry(subject, now - 40),
             "dl_3": index_entry(subject, now - 20), "dl_4": index_entry(title, now - 5),
             "dl_gone": index_entry(title, now - 99)}
    described = {subject.key: describe(subject, "Subject has 'ACME-1'"), title.key: describe(title, "Title: 'y'"),
                 "0123456789abcdef": describe(Cause("ws_acme", "OLD", "", "old"), "old")}

    groups, stale, unused = group_bucket("ws_acme", timed, index, described, now, with_ids=True)

    first, second = groups
    assert (first.code, first.fields, first.count, first.ids) == ("FIELD_CUSTOM_VALIDATION_EXCEPTION", ["Subject"], 3,
                                                                  ["dl_1", "dl_2", "dl_3"])
    assert first.first_seen == now - 9000 and first.last_seen == now - 10
    assert first.example == "Subject has 'ACME-1'" and first.pattern == "Subject has '…'"
    assert len(first.spark) == SPARK_HOURS and sum(first.spark) == 3
    assert first.spark[-1] == 2 and first.spark[-3] == 1
    assert (second.code, second.count, second.sample_id) == ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", 1, "dl_4")
    assert stale == ["dl_gone"] and unused == ["0123456789abcdef"]


def test_a_letter_without_an_index_entry_is_left_for_the_store_to_index():
    groups, stale, unused = group_bucket("ws_acme", [("dl_1", 5.0)], {}, {}, 10.0)
    assert groups == [] and stale == [] and unused == []

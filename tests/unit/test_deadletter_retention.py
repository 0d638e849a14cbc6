"""Pure parts of the per-workspace dead-letter store: retention math, failure history, which bucket a letter goes to."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import redis

from events.deadletter import UNROUTED, DeadLetterStore, Retention, mark_replayed, next_history
from schemas.deadletter import HISTORY_KEEP, HISTORY_MESSAGE_KEEP
from schemas.settings import SettingsError, load_settings
from schemas.workspace import is_workspace_id
from workers.status import summary_text

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("count, aged, max_count, expected", [
    (10, 0, 50, 0),     # under the cap, nothing aged: nothing goes
    (10, 3, 50, 3),     # the aged ones go
    (51, 0, 50, 1),     # one over the cap: the oldest goes
    (60, 4, 50, 10),    # over the cap by more than are aged: down to the cap
    (60, 20, 50, 20),   # more aged than over the cap: every aged one
    (5, 5, 50, 5),      # everything aged: everything
    (0, 0, 1, 0),
])
def test_given_counts_when_retention_decides_then_the_oldest_go_until_none_is_aged_and_the_cap_holds(
        count, aged, max_count, expected):
    assert Retention(max_age=60, max_count=max_count).to_drop(count, aged) == expected


def test_given_a_max_age_when_the_cutoff_is_asked_then_it_is_that_many_seconds_before_now():
    assert Retention(max_age=3600, max_count=1).cutoff(10_000.0) == 6_400.0


def test_given_default_settings_when_retention_is_built_then_it_keeps_30_days_and_50000_per_workspace():
    settings = load_settings({})
    assert Retention.from_settings(settings) == Retention() == Retention(30 * 86400.0, 50_000)
    custom = load_settings({"SFSYNC_DLQ_MAX_AGE": "3600", "SFSYNC_DLQ_MAX_PER_WORKSPACE": "10"})
    assert Retention.from_settings(custom) == Retention(3600.0, 10)


@pytest.mark.parametrize("name, value", [("SFSYNC_DLQ_MAX_AGE", "0"), ("SFSYNC_DLQ_MAX_PER_WORKSPACE", "0"),
                                         ("SFSYNC_DLQ_MAX_PER_WORKSPACE", "lots")])
def test_given_a_retention_of_nothing_when_settings_load_then_the_variable_is_named(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_given_many_failures_when_the_history_grows_then_it_keeps_the_latest_ones_with_short_messages():
    history = []
    for n in range(HISTORY_KEEP + 5):
        history = next_history(history, NOW + timedelta(minutes=n), f"CODE_{n}", "x" * 2000)
    assert len(history) == HISTORY_KEEP
    assert history[0].error_code == "CODE_5" and history[-1].error_code == f"CODE_{HISTORY_KEEP + 4}"
    assert {len(f.error_message) for f in history} == {HISTORY_MESSAGE_KEEP}


def test_given_a_history_when_replayed_then_only_its_last_failure_is_marked():
    history = next_history(next_history([], NOW, "A", "first"), NOW + timedelta(hours=1), "B", "second")
    marked = mark_replayed(history, NOW + timedelta(hours=2))
    assert [f.replayed_at for f in marked] == [None, NOW + timedelta(hours=2)]
    assert mark_replayed([], NOW) == []


@pytest.mark.parametrize("value, plausible", [
    ("ws_acme", True), ("acme-prod.eu", True), ("A" * 64, True), ("_unrouted", False), (".hidden", False),
    ("A" * 65, False), ("", False), ("ws acme", False), ("ws_acme\n", False), ("ws:{x}", False),
    ("wś", False), (None, False), (42, False),
])
def test_given_a_value_when_checked_as_a_workspace_id_then_only_plain_short_ids_pass(value, plausible):
    assert is_workspace_id(value) is plausible


def test_given_a_known_workspace_list_when_a_bucket_is_chosen_then_others_and_garbage_share_unrouted():
    # no command is sent: a client connects only when it is used
    store = DeadLetterStore(redis.Redis(host="127.0.0.1", port=1), known=lambda ws: ws == "ws_acme")
    assert store.bucket_of("ws_acme") == "ws_acme"
    for named in ("ws_other", "ws acme", None, "x" * 65, "ws_acme\n", UNROUTED):
        assert store.bucket_of(named) == UNROUTED


def test_given_counts_per_workspace_when_summarised_then_held_and_dropped_are_named():
    assert summary_text({"ws_b": 1, "ws_a": 2}, {"ws_a": 10, "ws_b": 0}) == \
        "held: ws_a 2, ws_b 1; dropped by retention: ws_a 10"
    assert summary_text({}, {}) == ""

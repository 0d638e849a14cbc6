"""The dead-letter store per workspace against a real Redis: buckets, retention, removal, replay history, migration."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from events.deadletter import (LEGACY_BY_TIME, LEGACY_ENTRIES, UNROUTED, WORKSPACES, DeadLetterFilter, DeadLetterStore,
                               Retention, dead_letter_id)
from events.keys import key, workspace_pattern
from schemas.deadletter import DeadLetterRecord
from workers.observability import metrics

pytestmark = pytest.mark.integration

KNOWN = {"ws_a", "ws_b"}


def store_of(client, **kwargs) -> DeadLetterStore:
    return DeadLetterStore(client, known=lambda ws: ws in KNOWN, **kwargs)


def add(store: DeadLetterStore, workspace_id, event_id, code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION", **kw):
    return store.add(event={"id": event_id, "workspace_id": workspace_id}, event_id=event_id,
                     event_type="email.sent", workspace_id=workspace_id, error_code=code, error_message="refused",
                     task_name="sfsync.email.sent", queue="email.sent", **kw)


def keys_of(client, workspace_id: str) -> set[str]:
    return set(client.scan_iter(match=workspace_pattern(workspace_id)))


def test_given_events_of_several_workspaces_when_dead_lettered_then_each_lands_in_its_own_hash_tagged_keys(
        redis_client):
    store = store_of(redis_client)
    add(store, "ws_a", "evt_1")
    add(store, "ws_b", "evt_2")
    stray = add(store, "ws_unknown", "evt_3")
    garbage = add(store, "ws with spaces", "evt_4")
    nameless = add(store, None, None, code="INVALID_JSON")

    assert redis_client.smembers(WORKSPACES) == {"ws_a", "ws_b", UNROUTED}
    assert redis_client.hlen(key("ws_a", "dlq", "entries")) == 1 and redis_client.zcard(key("ws_a", "dlq", "by_time")) == 1
    assert redis_client.hlen(key(UNROUTED, "dlq", "entries")) == 3
    assert not redis_client.exists(LEGACY_ENTRIES, LEGACY_BY_TIME)
    assert stray.workspace_id == "ws_unknown" and garbage.workspace_id == "ws with spaces"
    assert store.count_by_workspace() == {"ws_a": 1, "ws_b": 1, UNROUTED: 3} and store.count() == 5
    assert [r.event_id for r in store.select(DeadLetterFilter.of(workspaces=["ws_a"]))] == ["evt_1"]
    # a workspace unknown here is found by the field its record keeps, in the shared bucket
    assert [r.id for r in store.select(DeadLetterFilter.of(workspaces=["ws_unknown"]))] == [stray.id]
    assert {r.id for r in store.select(DeadLetterFilter.of(workspaces=[UNROUTED]))} == {stray.id, garbage.id,
                                                                                        nameless.id}
    assert [r.event_id for r in store.iter_all()] == ["evt_1", "evt_2", "evt_3", "evt_4", None]
    assert store.get(stray.id).event_id == "evt_3" and store.get(stray.id, "ws_a") is None


def test_given_a_workspace_over_its_cap_when_another_fails_then_its_oldest_are_dropped_counted_and_measured(
        redis_client):
    metrics.enable()
    try:
        store = store_of(redis_client, retention=Retention(max_age=3600, max_count=3),
                         on_drop=metrics.record_dead_letters_dropped)
        add(store, "ws_b", "evt_b")
        for n in range(5):
            add(store, "ws_a", f"evt_{n}", code="INVALID_JSON" if n == 0 else "FIELD_CUSTOM_VALIDATION_EXCEPTION")

        assert [r.event_id for r in store.iter_all(["ws_a"])] == ["evt_2", "evt_3", "evt_4"]
        assert store.count("ws_b") == 1
        assert store.dropped_by_workspace() == {"ws_a": {"FIELD_CUSTOM_VALIDATION_EXCEPTION": 1, "INVALID_JSON": 1}}
        assert metrics.registry().get_sample_value("sfsync_dead_letters_dropped_total", {"workspace": "ws_a"}) == 2
        assert metrics.registry().get_sample_value("sfsync_dead_letters_dropped_total", {"workspace": "ws_b"}) is None
    finally:
        metrics.disable()


def test_given_dead_letters_past_the_max_age_when_pruned_then_they_are_dropped_and_the_workspace_stays_listed(
        redis_client):
    store = store_of(redis_client, retention=Retention(max_age=3600, max_count=100))
    add(store, "ws_a", "evt_1")
    add(store, "ws_a", "evt_2")
    add(store, "ws_b", "evt_3")

    assert store.prune(datetime.now(timezone.utc) + timedelta(minutes=30)) == {}
    assert store.prune(datetime.now(timezone.utc) + timedelta(hours=2)) == {"ws_a": 2, "ws_b": 1}

    assert store.count() == 0
    assert store.workspaces() == ["ws_a", "ws_b"]  # their drop counts are still worth showing
    assert store.dropped_by_workspace()["ws_a"] == {"FIELD_CUSTOM_VALIDATION_EXCEPTION": 2}


def test_given_an_aged_dead_letter_when_the_next_one_of_its_workspace_is_added_then_the_aged_one_is_dropped(
        redis_client):
    store = store_of(redis_client, retention=Retention(max_age=0.2, max_count=100))
    add(store, "ws_a", "evt_old")
    time.sleep(0.3)
    add(store, "ws_a", "evt_new")

    assert [r.event_id for r in store.iter_all()] == ["evt_new"]


def test_given_an_empty_bucket_when_pruned_then_it_leaves_the_workspace_set(redis_client):
    store = store_of(redis_client)
    letter = add(store, "ws_a", "evt_1")
    store.purge(DeadLetterFilter.of(ids=[letter.id]))

    assert store.prune() == {}
    assert store.workspaces() == []


def test_given_two_workspaces_when_one_is_removed_then_only_its_keys_go(redis_client):
    store = store_of(redis_client, retention=Retention(max_age=3600, max_count=1))
    for ws in ("ws_a", "ws_b"):
        add(store, ws, "evt_1")
        add(store, ws, "evt_2")  # drops evt_1: a drop count
        store.replay(DeadLetterFilter.of(workspaces=[ws]), lambda record: None)  # a tombstone
        add(store, ws, "evt_3")
    kept = keys_of(redis_client, "ws_b")

    assert store.remove_workspace("ws_a") == 1

    assert keys_of(redis_client, "ws_a") == set()
    assert keys_of(redis_client, "ws_b") == kept and len(kept) == 7  # with its cause index (two hashes)
    assert store.workspaces() == ["ws_b"] and store.count() == 1
    with pytest.raises(ValueError, match="shared bucket"):
        store.remove_workspace(UNROUTED)


def test_a_replayed_event_that_fails_again_keeps_one_record(redis_client):
    store = store_of(redis_client)
    first = add(store, "ws_a", "evt_1", code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", attempts=3)
    result = store.replay(DeadLetterFilter.of(ids=[first.id]), lambda record: None)
    assert len(result.replayed) == 1 and store.count() == 0

    again = add(store, "ws_a", "evt_1", code="FIELD_CUSTOM_VALIDATION_EXCEPTION", attempts=1)

    assert again.id == first.id and store.count() == 1
    assert again.attempts == 4 and again.first_failure_at == first.first_failure_at
    assert [f.error_code for f in again.history] == ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                                     "FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    assert again.history[0].replayed_at is not None and again.history[1].replayed_at is None
    assert redis_client.hlen(key("ws_a", "dlq", "replayed")) == 0
    assert store.get(first.id) == again


def test_given_an_event_without_ids_when_its_replay_fails_again_then_the_replay_meta_continues_its_record(
        redis_client):
    store = store_of(redis_client)
    first = add(store, None, None, code="INVALID_JSON")
    store.replay(DeadLetterFilter.of(ids=[first.id]), lambda record: None)

    again = add(store, None, None, code="INVALID_JSON", replay_of=first.id)
    unrelated = add(store, None, None, code="INVALID_JSON", replay_of="dl_forged")

    assert again.id == first.id and len(again.history) == 2
    assert unrelated.id not in (first.id, "dl_forged") and len(unrelated.history) == 1


def test_given_a_replayed_event_that_fails_before_its_record_is_retired_then_the_newer_failure_is_kept(
        redis_client):
    store = store_of(redis_client)
    first = add(store, "ws_a", "evt_1")

    # a fast worker: the event fails again while the replay is still running
    store.replay(DeadLetterFilter.of(ids=[first.id]), lambda record: add(store, "ws_a", "evt_1", code="NEWER"))

    [kept] = store.iter_all()
    assert kept.error_code == "NEWER" and kept.attempts == 2


def test_given_an_unknown_workspace_that_becomes_known_when_its_event_fails_again_then_the_record_moves(
        redis_client):
    served: set[str] = set()
    store = DeadLetterStore(redis_client, known=lambda ws: ws in served)
    first = add(store, "ws_new", "evt_1")
    served.add("ws_new")

    again = add(store, "ws_new", "evt_1")

    assert again.id == first.id and again.attempts == 2
    assert store.count_by_workspace() == {"ws_new": 1, UNROUTED: 0}


def legacy_record(workspace_id, event_id, at: datetime, code: str = "INVALID_FIELD") -> DeadLetterRecord:
    return DeadLetterRecord(id=dead_letter_id(workspace_id, event_id), event_id=event_id, event_type="email.sent",
                            workspace_id=workspace_id, event={"id": event_id}, error_code=code,
                            error_message="no such field", first_failure_at=at, last_failure_at=at,
                            sfsync_version="0.9.0")


def test_given_dead_letters_in_the_old_global_keys_when_the_store_is_first_used_then_they_move_to_their_buckets(
        redis_client):
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    old = [legacy_record("ws_a", "evt_1", start), legacy_record("ws_b", "evt_2", start + timedelta(minutes=1)),
           legacy_record("ws_gone", "evt_3", start + timedelta(minutes=2)),
           legacy_record(None, None, start + timedelta(minutes=3)),
           legacy_record("ws_a", "evt_4", start + timedelta(minutes=4)),
           legacy_record("ws_a", "evt_5", start + timedelta(minutes=5))]
    for record in old:
        redis_client.hset(LEGACY_ENTRIES, record.id, record.model_dump_json())
        redis_client.zadd(LEGACY_BY_TIME, {record.id: record.last_failure_at.timestamp()})

    store = store_of(redis_client, retention=Retention(max_age=86400, max_count=2))

    assert store.count_by_workspace() == {"ws_a": 2, "ws_b": 1, UNROUTED: 2}
    assert not redis_client.exists(LEGACY_ENTRIES) and not redis_client.exists(LEGACY_BY_TIME)
    assert [r.event_id for r in store.iter_all()] == ["evt_2", "evt_3", None, "evt_4", "evt_5"]  # ws_a: its newest
    assert store.dropped_by_workspace() == {"ws_a": {"INVALID_FIELD": 1}}
    assert store.get(old[1].id) == old[1]
    # a failure of a migrated record continues it, history starting from its stored failure
    again = add(store, "ws_b", "evt_2", code="INVALID_FIELD")
    assert again.attempts == 2 and [f.error_code for f in again.history] == ["INVALID_FIELD", "INVALID_FIELD"]


def test_given_dead_letters_of_two_workspaces_when_listed_and_purged_by_workspace_then_only_that_one_is_touched(
        redis_url, redis_client):
    from workers.cli import main

    store = store_of(redis_client, retention=Retention(max_age=3600, max_count=2))
    for n in range(3):
        add(store, "ws_a", f"evt_a{n}")
    add(store, "ws_b", "evt_b")
    env = {"SFSYNC_REDIS_URL": redis_url}

    listed = CliRunner().invoke(main, ["dlq", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0] == "3 dead letter(s); held: ws_a 2, ws_b 1; dropped by retention: ws_a 1"
    only_b = CliRunner().invoke(main, ["dlq", "list", "--workspace", "ws_b"], env=env)
    assert only_b.output.splitlines()[0] == "1 dead letter(s); held: ws_b 1"

    purged = CliRunner().invoke(main, ["dlq", "purge", "--workspace", "ws_a", "--yes", "--json"], env=env)

    assert purged.exit_code == 0 and '"purged": 2' in purged.output
    assert store.count_by_workspace() == {"ws_a": 0, "ws_b": 1}


def test_given_dead_letters_when_status_is_collected_then_it_counts_them_per_workspace_with_drops(
        redis_url, redis_client):
    from schemas.settings import load_settings
    from workers.status import collect_status

    store = store_of(redis_client, retention=Retention(max_age=3600, max_count=1))
    add(store, "ws_a", "evt_1")
    add(store, "ws_a", "evt_2")
    add(store, "ws_elsewhere", "evt_3")

    report = collect_status(load_settings({"SFSYNC_REDIS_URL": redis_url}))["dead_letters"]

    assert report["total"] == 2 and report["by_workspace"] == {"ws_a": 1, UNROUTED: 1}
    assert report["dropped_by_retention"] == {"ws_a": 1}


def test_given_a_settler_with_a_retention_when_events_are_buried_then_it_holds_the_cap(redis_client):
    from schemas.events import parse_event
    from tests.factories import email_event
    from workers.decide import Bury
    from workers.messages import BatchItem
    from workers.settle import Settler
    from workers.sync.outcomes import DeadLetter

    settler = Settler(redis_client, "ws_acme", known=lambda ws: ws == "ws_acme",
                      retention=Retention(max_age=3600, max_count=2))
    settled = []
    for n in range(3):
        raw = email_event(workspace_id="ws_acme")
        item = BatchItem(raw=raw, event=parse_event(raw), problem=None, meta={}, task_name="sfsync.email.sent",
                         queue="email.sent", task_id=f"t{n}")
        settled.append((item, DeadLetter("INVALID_FIELD", "no"), Bury("INVALID_FIELD", "no")))

    assert settler.settle(settled) == {"dead_lettered": 3}
    assert DeadLetterStore(redis_client).count_by_workspace() == {"ws_acme": 2}


def test_given_a_filter_without_workspaces_when_selecting_then_every_bucket_is_read_whole(redis_client):
    store = store_of(redis_client)
    add(store, "ws_a", "evt_1", code="A")
    add(store, "ws_unknown", "evt_2", code="A")
    add(store, None, None, code="A")

    assert len(store.select(DeadLetterFilter.of(codes=["A"]))) == 3


def test_given_a_workspace_with_a_bucket_when_selected_then_exactly_its_bucket_is_listed_as_counted(redis_client):
    # a letter of `_unrouted` naming ws_a (it came before ws_a was served) stays `_unrouted`'s
    store = DeadLetterStore(redis_client, known=lambda ws: ws == "ws_a")
    early = store.add(event={"id": "evt_0"}, event_id="evt_0", event_type="email.sent", workspace_id="ws_b",
                      error_code="WORKSPACE_NOT_SERVED", error_message="not served", task_name="sfsync.email.sent",
                      queue="email.sent")
    mine = add(store, "ws_a", "evt_1")
    store_b = DeadLetterStore(redis_client, known=lambda ws: ws in ("ws_a", "ws_b"))
    later = add(store_b, "ws_b", "evt_2")

    counts = store_b.count_by_workspace()
    assert counts == {"ws_a": 1, "ws_b": 1, UNROUTED: 1}
    for ws, expected in (("ws_a", [mine.id]), ("ws_b", [later.id]), (UNROUTED, [early.id])):
        assert [r.id for r in store_b.select(DeadLetterFilter.of(workspaces=[ws]))] == expected, ws
    assert store_b.get(early.id, "ws_b").id == early.id  # looked up by id, `_unrouted` is still tried

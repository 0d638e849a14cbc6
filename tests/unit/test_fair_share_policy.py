"""The fair-share policy, table by table: each rule decided from a snapshot and the time alone."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from workers.consumer.policy import Admission, BatchKind, FairShare, Snapshot, Tunables

NOW = 1_000.0
BATCH = 200
POLICY = FairShare(Tunables(batch_size=BATCH))


@dataclass(frozen=True)
class B:  # a bucket
    size: int
    due: float = NOW + 5


@dataclass(frozen=True)
class O:  # an overflow
    size: int
    due: float = NOW + 5


@dataclass(frozen=True)
class W:  # a waiting batch
    workspace: str
    kind: BatchKind = BatchKind.FRESH
    submitted: float = NOW
    events: int = 1
    started: bool = False


def snap(**fields) -> Snapshot:
    """A quiet consumer of two pool processes and a prefetch of 1,200 (limit 1,080), changed by `fields`."""
    base = Snapshot(processes=2, prefetch=1_200, held=0, held_by_workspace={}, buckets={}, turns=(), waiting=0,
                    open_batches={}, in_flight=0, backlog_in_flight=0, overflows={}, spilled=frozenset(), seen={},
                    queued=0, overflow=True)
    return replace(base, **fields)


def test_given_a_prefetch_count_when_the_limit_is_read_then_it_is_nine_tenths_and_at_least_a_batch():
    assert POLICY.prefetch_limit(snap(prefetch=1_200)) == 1_080
    assert POLICY.prefetch_limit(snap(prefetch=100)) == BATCH
    assert POLICY.prefetch_limit(snap(prefetch=0)) == 1 << 30  # unbounded


FLOODING = dict(held=540, held_by_workspace={"ws_flood": 400}, seen={"ws_flood": NOW, "ws_quiet": NOW - 30})


@pytest.mark.parametrize("case, fields, workspace, expected", [
    ("a workspace like any other", {}, "ws_a", Admission.BUCKET),
    ("already spilled", dict(spilled={"ws_a"}), "ws_a", Admission.SPILL),
    ("two whole batches, half-way to the limit, another active", FLOODING, "ws_flood", Admission.SPILL),
    ("...but no overflow store", {**FLOODING, "overflow": False}, "ws_flood", Admission.BUCKET),
    ("...but nobody else sent anything", {**FLOODING, "seen": {"ws_flood": NOW}}, "ws_flood", Admission.BUCKET),
    ("...but the other was last seen over a minute ago",
     {**FLOODING, "seen": {"ws_flood": NOW, "ws_quiet": NOW - 61}}, "ws_flood", Admission.BUCKET),
    ("...but it holds less than two batches", {**FLOODING, "held_by_workspace": {"ws_flood": 399}}, "ws_flood",
     Admission.BUCKET),
    ("...but the consumer is below half its limit", {**FLOODING, "held": 539}, "ws_flood", Admission.BUCKET),
    ("a message naming no workspace", dict(spilled={""}), "", Admission.BUCKET),
])
def test_given_a_message_when_admitted_then_it_is_bucketed_or_spilled(case, fields, workspace, expected):
    assert POLICY.admit(snap(**fields), workspace, NOW) is expected, case


@pytest.mark.parametrize("case, fields, expected", [
    ("its bucket is whole", dict(buckets={"ws_a": B(200), "ws_b": B(300)}), ["ws_a"]),
    ("room left, the consumer far from its limit", dict(buckets={"ws_a": B(10)}, held=10), []),
    ("room left, the consumer at its limit, nothing waiting: the fullest goes",
     dict(buckets={"ws_a": B(10), "ws_b": B(150)}, held=1_080), ["ws_b"]),
    ("at its limit but batches wait for the pool: an early flush would only shrink batches",
     dict(buckets={"ws_a": B(10), "ws_b": B(150)}, held=1_080, waiting=1), []),
])
def test_given_a_bucket_that_grew_when_asked_then_whole_buckets_go_and_the_fullest_goes_early(case, fields, expected):
    assert POLICY.flush_on_arrival(snap(**fields), "ws_a") == expected, case


def test_given_buckets_when_the_tick_comes_then_those_past_their_due_time_go():
    buckets = {"ws_late": B(3, due=NOW - 0.1), "ws_now": B(1, due=NOW), "ws_later": B(150, due=NOW + 0.1)}
    assert POLICY.due(snap(buckets=buckets), NOW) == ["ws_late", "ws_now"]


@pytest.mark.parametrize("case, fields, expected", [
    ("nothing spilled, no backlog", dict(seen={"ws_a": NOW, "ws_b": NOW}, queued=400), set()),
    ("a flood is sieved always", dict(spilled={"ws_flood"}, queued=0), {"ws_flood"}),
    ("a name that is no workspace id never becomes a key", dict(spilled={"ws_flood", "bad id!", ""}), {"ws_flood"}),
    ("a backlog (over 400 messages): every workspace active within the minute",
     dict(spilled={"ws_flood"}, seen={"ws_a": NOW, "ws_b": NOW - 59, "ws_c": NOW - 61}, queued=401),
     {"ws_flood", "ws_a", "ws_b"}),
    ("a backlog of one workspace alone fills whole batches anyway",
     dict(seen={"ws_a": NOW, "ws_c": NOW - 61}, queued=5_000), set()),
    ("no overflow store", dict(spilled={"ws_flood"}, overflow=False), set()),
])
def test_given_the_queues_when_the_sieve_runs_then_these_workspaces_are_moved_aside(case, fields, expected):
    assert POLICY.sieve_targets(snap(**fields), NOW) == expected, case


@pytest.mark.parametrize("case, fields, expected", [
    ("a whole batch waits in it", dict(overflows={"ws_a": O(200)}), ["ws_a"]),
    ("a few, past their linger", dict(overflows={"ws_a": O(3, due=NOW - 1)}), ["ws_a"]),
    ("a few, within their linger", dict(overflows={"ws_a": O(3)}), []),
    ("a batch of its workspace waits with room: it drains as it starts",
     dict(overflows={"ws_a": O(500)}, open_batches={"ws_a": W("ws_a", events=199)}), []),
    ("a whole batch of its workspace waits: no room to take the overflow along",
     dict(overflows={"ws_a": O(3, due=NOW - 1)}, open_batches={"ws_a": W("ws_a", events=200)}), ["ws_a"]),
    ("its batch has started: nothing joins it",
     dict(overflows={"ws_a": O(500)}, open_batches={"ws_a": W("ws_a", started=True)}), ["ws_a"]),
])
def test_given_overflows_when_the_tick_comes_then_these_get_a_drain_of_their_own(case, fields, expected):
    assert POLICY.drains_due(snap(**fields), NOW) == expected, case


@pytest.mark.parametrize("overflow, messages, kind, drain_kind", [
    (None, 200, BatchKind.FRESH, BatchKind.FRESH),
    (O(199), 200, BatchKind.FRESH, BatchKind.FRESH),         # a quiet workspace's few sorted messages
    (O(200), 200, BatchKind.BACKLOG, BatchKind.BACKLOG),     # a flood's whole batch and its drains yield
    (O(5_000), 150, BatchKind.FRESH, BatchKind.BACKLOG),     # a flood's partial batch read as it comes does not
])
def test_given_a_batch_when_made_then_its_kind_follows_its_workspaces_backlog(overflow, messages, kind, drain_kind):
    s = snap(overflows={"ws_a": overflow} if overflow else {})
    assert POLICY.kind(s, "ws_a", messages) is kind
    assert POLICY.drain_kind(s, "ws_a") is drain_kind


@pytest.mark.parametrize("case, fields, drained, done, expected", [
    ("a whole batch came out of the overflow", dict(overflows={"ws_a": O(0)}), True, 200, True),
    ("less than a batch came out", dict(overflows={"ws_a": O(0)}), True, 199, False),
    ("it did not drain", dict(overflows={"ws_a": O(0)}), False, 200, False),
    ("the overflow is gone", {}, True, 200, False),
    ("a batch of it with room waits already",
     dict(overflows={"ws_a": O(0)}, open_batches={"ws_a": W("ws_a", events=3)}), True, 200, False),
])
def test_given_a_batch_that_ended_when_asked_then_a_whole_drain_is_followed_by_another(case, fields, drained, done,
                                                                                       expected):
    assert POLICY.drain_again(snap(**fields), "ws_a", drained, done) is expected, case


def test_given_a_starting_batch_when_asked_then_a_drain_or_a_batch_of_a_workspace_with_an_overflow_drains_it():
    s = snap(overflows={"ws_a": O(3)})
    assert POLICY.drains_along(s, "ws_a", 5) and POLICY.drains_along(s, "ws_b", 0)
    assert not POLICY.drains_along(s, "ws_b", 5)


YOUNG = NOW - 1.0  # submitted a second ago: within the drain patience
OLD = NOW - 5.0  # has waited the patience out


@pytest.mark.parametrize("case, fields, expected", [
    ("nothing waits", {}, None),
    ("every process is taken", dict(turns=(W("ws_a"),), in_flight=2), None),
    ("the first in turn", dict(turns=(W("ws_a"), W("ws_b"))), 0),
    ("a backlog lets a fresh batch go first", dict(turns=(W("ws_flood", BatchKind.BACKLOG, YOUNG), W("ws_a"))), 1),
    ("...until it has waited its patience", dict(turns=(W("ws_flood", BatchKind.BACKLOG, OLD), W("ws_a"))), 0),
    ("a backlog alone goes at once", dict(turns=(W("ws_flood", BatchKind.BACKLOG, YOUNG),)), 0),
    ("the reserve: backlog in all processes but one, a bucket due within a second",
     dict(turns=(W("ws_flood", BatchKind.BACKLOG, OLD),), in_flight=1, backlog_in_flight=1,
          buckets={"ws_quiet": B(3, due=NOW + 0.5)}), None),
    ("...lets a fresh batch through",
     dict(turns=(W("ws_flood", BatchKind.BACKLOG, OLD), W("ws_quiet")), in_flight=1, backlog_in_flight=1,
          buckets={"ws_quiet": B(3, due=NOW + 0.5)}), 1),
    ("...ends when no bucket is due within a second",
     dict(turns=(W("ws_flood", BatchKind.BACKLOG, YOUNG),), in_flight=1, backlog_in_flight=1,
          buckets={"ws_quiet": B(3, due=NOW + 1.0)}), 0),
    ("...does not hold when a fresh batch is in flight",
     dict(turns=(W("ws_flood", BatchKind.BACKLOG, YOUNG),), in_flight=1, backlog_in_flight=0,
          buckets={"ws_quiet": B(3, due=NOW + 0.5)}), 0),
    ("...and never with one process",
     dict(processes=1, turns=(W("ws_flood", BatchKind.BACKLOG, YOUNG),), buckets={"ws_quiet": B(3, due=NOW)}), 0),
])
def test_given_batches_waiting_when_a_process_is_free_then_this_one_starts(case, fields, expected):
    assert POLICY.next_start(snap(**fields), NOW) == expected, case

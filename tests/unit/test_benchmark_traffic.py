"""The many-workspace benchmark's traffic: Zipf shares and bundles interleaved across workspaces."""

from __future__ import annotations

import random

from benchmarks.traffic import interleave, owner_of, split, workspace_ids, zipf_weights
from schemas.events import parse_event
from tests.factories import email_event


def test_given_zipf_weights_when_fifty_workspaces_then_the_busiest_sends_a_quarter_and_all_sum_to_one():
    weights = zipf_weights(50, 1.1)

    assert abs(sum(weights) - 1.0) < 1e-9
    assert weights == sorted(weights, reverse=True)
    assert 0.25 < weights[0] < 0.27 and weights[-1] < 0.004


def test_given_a_total_when_split_by_weight_then_every_workspace_gets_some_and_nothing_is_lost():
    counts = split(20_000, zipf_weights(50, 1.1))

    assert sum(counts) == 20_000
    assert min(counts) >= 1 and counts[0] == max(counts)


def test_given_workspace_ids_when_numbered_then_they_sort_in_rank_order():
    ids = workspace_ids(50)

    assert ids[0] == "ws01" and ids[-1] == "ws50" and ids == sorted(ids)
    assert owner_of("evt_bench_steady-ws07_123") == "ws07"


def test_given_two_workspaces_when_interleaved_then_bundles_stay_per_workspace_and_in_order():
    per_ws = {ws: [parse_event(email_event(workspace_id=ws, event_id=f"evt_{ws}_{n}")) for n in range(23)]
              for ws in ("wsa", "wsb")}

    out = interleave(per_ws, random.Random(3))

    seen: dict[str, list[str]] = {}
    for _, _, evs, _ in out:
        assert len({e.workspace_id for e in evs}) == 1 and len(evs) <= 5
        seen.setdefault(evs[0].workspace_id, []).extend(e.id for e in evs)
    assert seen == {ws: [e.id for e in evs] for ws, evs in per_ws.items()}
    assert [evs[0].workspace_id for _, _, evs, _ in out] != ["wsa"] * 5 + ["wsb"] * 5


def test_given_counted_traffic_when_bundled_then_it_groups_as_the_publisher_groups_real_events():
    from benchmarks.traffic import bundled
    from events.publish import bundles

    rng = random.Random(7)
    events = [parse_event(email_event(workspace_id=rng.choice(["wsa", "wsb"]), event_id=f"evt_{n}",
                                      event_type=rng.choice(["email.sent", "email.replied"]))) for n in range(60)]

    counted = bundled((route_queue(e.type), e.workspace_id, e.id) for e in events)

    assert [(q, ws, ids) for q, ws, ids in counted] == [
        (queue, evs[0].workspace_id, [e.id for e in evs]) for _, queue, evs, _ in bundles(events)]


def route_queue(event_type: str) -> str:
    from events.topology import route_for

    return route_for(event_type)[1]


def test_given_a_rate_when_the_trickle_ticks_then_each_tick_carries_its_share_drawn_by_weight():
    from benchmarks.traffic import TICK, trickle_ticks

    ticks = trickle_ticks(["ws01", "ws02"], [0.9, 0.1], 25.0, random.Random(1))
    drawn = [next(ticks) for _ in range(400)]

    assert sum(len(t) for t in drawn) == int(25.0 * TICK * 400)
    assert {len(t) for t in drawn} == {2, 3}
    share = sum(t.count("ws01") for t in drawn) / sum(len(t) for t in drawn)
    assert 0.85 < share < 0.95

"""The per-minute rollup's pure parts: outcome kinds, the latency histogram's percentiles, minutes grouped into points."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from events.rollup import LATENCY_BOUNDS, Minute, kind_of, latency_bucket, percentile, points
from workers.settle import publish_to_write


@pytest.mark.parametrize("outcome, kind", [
    ("written", "written"), ("duplicate", "written"), ("skipped_no_contact", "skipped"),
    ("skipped_already_logged", "skipped"), ("dead_lettered", "dead_lettered"), ("retried", "retried"),
    ("parked", "parked"), ("written_late", "written"), ("", "other"), ("something_new", "other"),
])
def test_each_outcome_label_has_one_kind_in_the_charts(outcome, kind):
    assert kind_of(outcome) == kind


@pytest.mark.parametrize("seconds, bucket", [(-3, 0), (0, 0), (0.1, 0), (0.11, 1), (1, 4), (1.2, 5), (59, 15),
                                             (60, 15), (86400, 26), (86401, 27), (math.inf, 27)])
def test_a_latency_falls_in_the_first_bucket_whose_bound_holds_it(seconds, bucket):
    assert latency_bucket(seconds) == bucket


def test_an_empty_histogram_has_no_percentile():
    assert percentile({}, 50) is None
    assert percentile({3: 0}, 99) is None


def test_percentiles_interpolate_inside_the_bucket():
    # 100 events between 1 and 1.5 s (bucket 5): the median is half way through it
    assert percentile({5: 100}, 50) == pytest.approx(1.25)
    # 99 fast events and 1 slow one: p50 is fast, p99 still among the fast, p100 the slow bucket's top
    histogram = {0: 99, 19: 1}
    assert percentile(histogram, 50) < 0.1
    assert percentile(histogram, 99) <= 0.1
    assert percentile(histogram, 100) == 300


def test_a_percentile_in_the_open_last_bucket_is_its_lower_bound():
    assert percentile({27: 5}, 99) == 86400


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


@given(st.lists(st.floats(min_value=0, max_value=100_000, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from([50, 90, 99]))
def test_a_histogram_percentile_lies_in_the_bucket_of_the_exact_one(values, q):
    histogram = Counter(latency_bucket(v) for v in values)
    estimate = percentile(histogram, q)
    exact = _exact(values, q)
    bucket = latency_bucket(exact)
    low = LATENCY_BOUNDS[bucket - 1] if bucket else 0.0
    high = LATENCY_BOUNDS[bucket] if not math.isinf(LATENCY_BOUNDS[bucket]) else low
    assert low <= estimate <= high


@given(st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_never_decrease_with_q(values):
    histogram = Counter(latency_bucket(v) for v in values)
    found = [percentile(histogram, q) for q in (1, 25, 50, 75, 90, 99, 100)]
    assert found == sorted(found)


def _minute(start, written=0, backlog=None, api=None, sampled=True, latency=None):
    m = Minute(start=start, counts={"written": written, "skipped": 0, "dead_lettered": 0, "retried": 0,
                                    "parked": 0, "other": 0}, latency=latency or {}, sampled=sampled,
               backlog=backlog or ({"retries": 0, "parked": 0, "overflow": 0} if sampled else {}))
    if api:
        m.api_used, m.api_limit = api
    return m


def test_points_sum_counts_merge_latency_and_keep_the_last_sampled_gauge_and_api_reading():
    minutes = [_minute(0, 2, {"retries": 5}, api=(10, 100), latency={1: 2}),
               _minute(60, 3, sampled=False, latency={1: 1, 4: 1}),
               _minute(120, 1, {"retries": 1}, api=(12, 100)),
               _minute(180, 0, sampled=False)]
    first, second = points(minutes, per=3)
    assert (first.start, first.minutes, first.counts["written"]) == (0, 3, 6)
    assert first.latency == {1: 3, 4: 1}
    assert first.backlog == {"retries": 1} and (first.api_used, first.api_limit) == (12, 100)
    # a point whose minutes no sampler saw has no backlog (a gap), not zeros
    assert (second.minutes, second.backlog, second.api_used) == (1, None, None)


def test_latency_runs_from_the_stamp_of_the_publisher_else_from_the_events_time():
    event = SimpleNamespace(occurred_at=SimpleNamespace(timestamp=lambda: 900.0))
    stamped = SimpleNamespace(meta={"published_at": 990.5}, event=event)
    foreign = SimpleNamespace(meta={}, event=event)
    broken = SimpleNamespace(meta={"published_at": float("nan")}, event=None)
    assert publish_to_write(stamped, 1000.0) == pytest.approx(9.5)
    assert publish_to_write(foreign, 1000.0) == 100.0
    assert publish_to_write(broken, 1000.0) is None
    # a publisher whose clock runs ahead does not make a negative wait
    assert publish_to_write(SimpleNamespace(meta={"published_at": 1005.0}, event=None), 1000.0) == 0.0

"""The full benchmark's CPU figures: per 10,000 events, and relative to the publisher's CPU in the same burst."""

from __future__ import annotations

from benchmarks.run import cpu_per_10k, cpu_per_publisher_second


def _run(events: int, publisher: float, **cpu: float) -> dict:
    return {"events": events, "cpu_seconds": {"publisher": publisher,
                                              **{k.replace("_", " "): v for k, v in cpu.items()}}}


def test_given_a_machine_twice_as_slow_in_one_burst_when_relative_then_the_same_figure_as_the_fast_burst():
    fast = _run(10_000, 1.0, sfsync_pool=2.0, sfsync_main=0.8, bare_pool=0.3, bare_main=0.6)
    slow = _run(10_000, 2.0, sfsync_pool=4.0, sfsync_main=1.6, bare_pool=0.6, bare_main=1.2)
    assert cpu_per_10k([fast, slow, slow], [fast, slow, slow])["sfsync pool"] == 4.0  # seconds: the slow moment
    relative = cpu_per_publisher_second([fast, slow, slow], [fast, slow, slow])
    assert relative == {"sfsync pool": 2.0, "sfsync main": 0.8, "bare pool": 0.3, "bare main": 0.6}


def test_given_bursts_when_relative_then_the_median_of_each_bursts_own_ratio():
    runs = [_run(10_000, 1.0, sfsync_pool=1.0), _run(10_000, 2.0, sfsync_pool=3.0), _run(10_000, 4.0, sfsync_pool=10.0)]
    assert cpu_per_publisher_second(runs, [])["sfsync pool"] == 1.5  # ratios 1.0, 1.5, 2.5


def test_given_a_burst_without_publisher_cpu_when_relative_then_it_is_left_out_not_divided_by_zero():
    runs = [_run(10_000, 0.0, sfsync_pool=1.0), _run(10_000, 2.0, sfsync_pool=1.0)]
    assert cpu_per_publisher_second(runs, []) == {"sfsync pool": 0.5, "sfsync main": 0.0}

"""The fair-share policy simulated on a fake clock with the benchmark's traffic: its fairness and isolation figures, in seconds.

The figures it must land near are the benchmark's, measured on this 2-core machine (see
docs/benchmarks.md, *Many workspaces*): fairness (--rate 20) the smallest workspace's p99 5.1 s,
the others' worst 5.6 s, their median 5.25 s, the 50,000-event flood written in 48-58 s;
isolation the others' worst p99 5.2-5.3 s, 9 calls to the broken org, its backlog written 4 s after.
"""

from __future__ import annotations

import time

import pytest

from benchmarks.simulate import Scenario, run
from workers.consumer.policy import Tunables

#: seconds the simulated figures may stray from the benchmark's
NEAR = 1.0


@pytest.fixture(scope="module")
def fairness():
    started = time.monotonic()
    result = run(Scenario(name="fairness", rate=20.0))
    result["took"] = time.monotonic() - started
    return result


def test_given_the_benchmarks_flood_when_simulated_then_its_fairness_figures_are_the_benchmarks(fairness):
    assert abs(fairness["smallest_p99_s"] - 5.14) < NEAR and fairness["smallest_p99_s"] <= 6.0
    assert abs(fairness["others_p99_max_s"] - 5.62) < NEAR and fairness["others_p99_max_s"] <= 6.0
    assert abs(fairness["others_p99_median_s"] - 5.25) < NEAR
    assert 40 <= fairness["burst_seconds"] <= 70, fairness
    assert fairness["moved_by_sieve"] > 0, "the flood outran the consumer: the sieve must have moved part of it"
    assert fairness["took"] < 20, "the simulation is there to be quick"


def test_given_a_flood_without_the_workspace_header_when_simulated_then_the_others_wait_behind_it():
    # what the header is for: without it, the sieve leaves the flood on the queue and everyone's
    # events published behind it wait until the consumer has read through it
    result = run(Scenario(name="fairness", rate=20.0, flood_as="no-header"))

    assert result["moved_by_sieve"] == 0
    assert result["smallest_p99_s"] > 10.0 and result["others_p99_max_s"] > 10.0, result


def test_given_the_benchmarks_outage_when_simulated_then_its_isolation_figures_are_the_benchmarks():
    result = run(Scenario(name="isolation", rate=100.0))

    assert abs(result["others_p99_max_s"] - 5.25) < NEAR and result["others_p99_max_s"] <= 6.0
    assert result["outage_calls"] <= 10
    assert abs(result["backlog_written_after_s"] - 4.0) < 2.0, result


def test_given_a_policy_that_never_spills_when_simulated_then_the_regression_shows_before_any_benchmark():
    result = run(Scenario(name="fairness", rate=20.0, tunables=Tunables(spill_pressure=99.0)))

    assert result["others_p99_max_s"] > 6.0, result


def test_given_a_flood_published_at_celery_nodes_pace_when_simulated_then_the_others_still_meet_the_target():
    # celery-node pushes one message per LPUSH: the benchmark's flood went out in 8 s instead of
    # 13-18; the backlog it makes on the queue is sorted within a sweep, not once it outgrows the
    # consumer's prefetch (which left the others 6.4-6.6 s)
    from dataclasses import replace

    from benchmarks.simulate import Costs

    result = run(Scenario(name="fairness", rate=20.0, costs=replace(Costs(), publish=0.0008)))

    assert result["burst_publish_seconds"] <= 8.5
    assert result["others_p99_max_s"] <= 6.0 and result["smallest_p99_s"] <= 6.0, result

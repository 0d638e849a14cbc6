"""`sfsync status` shows how old the oldest unacknowledged message is and what waits in Redis to be retried."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from prometheus_client import generate_latest

from events.keys import key
from schemas.settings import load_settings
from workers.observability import metrics
from workers.status import collect_status, oldest_unacked_seconds

pytestmark = pytest.mark.integration

WS = "ws_status"


def _settings(redis_url: str):
    return load_settings({"SFSYNC_REDIS_URL": redis_url, "SFSYNC_WORKSPACE_ID": WS})


def _orphan_unacked(redis_client, delivered_ago: dict[str, float]) -> None:
    """What kombu leaves behind for messages a worker took and never acknowledged."""
    now = time.time()
    for tag, ago in delivered_ago.items():
        redis_client.hset("unacked", tag, json.dumps([{"body": "x"}, "", "email.sent"]))
        redis_client.zadd("unacked_index", {tag: now - ago})


def test_given_orphaned_unacked_messages_when_status_asked_then_the_oldest_age_is_reported(redis_url, redis_client):
    _orphan_unacked(redis_client, {"tag-fresh": 3.0, "tag-orphaned": 400.0, "tag-middle": 50.0})

    report = collect_status(_settings(redis_url))

    assert report["unacked"] == 3
    assert 399.0 <= report["oldest_unacked_seconds"] <= 410.0
    assert report["queues"]["email.sent"] == 0


def test_given_nothing_unacked_when_status_asked_then_no_age_is_reported(redis_url, redis_client):
    report = collect_status(_settings(redis_url))

    assert report["unacked"] == 0 and report["oldest_unacked_seconds"] is None
    assert oldest_unacked_seconds(redis_client) is None


def test_given_retries_and_parked_work_when_status_asked_then_counts_and_next_due_times_per_workspace(
        redis_url, redis_client):
    now = time.time()
    redis_client.zadd(key(WS, "retries"), {"r1": now + 30, "r2": now + 120})
    redis_client.zadd(key(WS, "parked"), {"p1": now - 5})
    redis_client.zadd(key("ws_other", "retries"), {"r3": now + 600})

    report = collect_status(_settings(redis_url))

    ours, other = report["waiting"][WS], report["waiting"]["ws_other"]
    assert ours["retries"] == 2 and 25 <= ours["retries_next_due_in_seconds"] <= 30
    assert ours["parked"] == 1 and -10 <= ours["parked_next_due_in_seconds"] <= -4
    assert report["parked"] == 1
    assert other == {"retries": 1, "retries_next_due_in_seconds": pytest.approx(600, abs=5),
                     "parked": 0, "parked_next_due_in_seconds": None}


def test_given_waiting_and_orphaned_work_when_status_printed_then_an_operator_reads_ages_and_due_times(
        redis_url, redis_client, tmp_path):
    _orphan_unacked(redis_client, {"tag-orphaned": 400.0})
    redis_client.zadd(key(WS, "retries"), {"r1": time.time() + 30})
    env = {"PATH": "/usr/bin:/bin", "SFSYNC_REDIS_URL": redis_url, "SFSYNC_WORKSPACE_ID": WS}
    out = tmp_path / "status.out"

    with out.open("w") as sink:
        result = subprocess.run([sys.executable, "-m", "workers.cli", "status"], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, timeout=60)

    text = out.read_text()
    assert result.returncode == 0, text
    assert "oldest unacked" in text and ("400s" in text or "401s" in text)
    assert f"waiting {WS}: retries 1, next due in" in text


def test_given_an_age_when_recorded_then_the_gauge_exposes_it():
    metrics.enable()
    try:
        metrics.set_oldest_unacked(412.5)
        exposed = generate_latest(metrics.registry()).decode()
        metrics.set_oldest_unacked(None)
        cleared = generate_latest(metrics.registry()).decode()
    finally:
        metrics.disable()

    assert "sfsync_oldest_unacked_seconds 412.5" in exposed
    assert "sfsync_oldest_unacked_seconds 0.0" in cleared

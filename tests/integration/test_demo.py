"""`sfsync demo` runs on a Redis of its own: real events where SFSYNC_REDIS_URL points stay untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from events.publish import publish_many
from events.topology import ALL_QUEUES
from tests.factories import email_event

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _queued(redis_client) -> dict[str, list[str]]:
    return {queue: redis_client.lrange(queue, 0, -1) for queue in ALL_QUEUES}


def test_given_a_real_event_queued_at_sfsync_redis_url_when_the_demo_runs_then_the_event_is_untouched(
        redis_url, redis_client, tmp_path):
    event = email_event(workspace_id="ws_someone_real")
    publish_many([event], broker_url=redis_url)
    before = _queued(redis_client)
    assert sum(len(messages) for messages in before.values()) == 1
    keys_before = set(redis_client.keys("*"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    env["SFSYNC_REDIS_URL"] = redis_url
    out = tmp_path / "demo.out"
    with out.open("wb") as stream:
        code = subprocess.run([sys.executable, "-m", "workers.cli", "demo"], cwd=REPO, env=env, stdout=stream,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=180).returncode
    text = out.read_text(errors="replace")

    assert code == 0, text[-4000:]
    assert "embedded server of its own" in text
    assert "Salesforce API calls used" in text  # the demo really ran its events
    assert _queued(redis_client) == before
    assert set(redis_client.keys("*")) == keys_before
    assert redis_client.hlen("unacked") == 0

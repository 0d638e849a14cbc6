"""`sfsync demo` runs on a Redis of its own: real events where SFSYNC_REDIS_URL points stay untouched."""

from __future__ import annotations

import os
import re
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


def _table_rows(text: str) -> list[list[str]]:
    """The demo table's rows as cells (a wrapped cell's lines joined), ids and widths aside."""
    rows, current = [], None
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[1]:  # the outcome column is never wrapped: a new row
            current = cells
            rows.append(current)
        else:
            current[:] = [f"{a} {b}".strip() for a, b in zip(current, cells)]
    return [row[:5] for row in rows]  # the record id differs from run to run


def test_the_readme_shows_what_the_demo_prints(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    env["COLUMNS"] = "200"
    result = subprocess.run([sys.executable, "-m", "workers.cli", "demo"], cwd=REPO, env=env, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    readme = (REPO / "README.md").read_text()
    shown = readme[readme.index("What it prints"):]
    shown = shown[shown.index("```\n") + 4:]
    shown = shown[:shown.index("```")]

    assert _table_rows(shown) == _table_rows(result.stdout)
    calls = re.search(r"Salesforce API calls used: (\d+) for (\d+) events", result.stdout).groups()
    assert re.search(r"Salesforce API calls used: (\d+) for (\d+) events", shown).groups() == calls

"""The Celery-native entry point refuses to run a worker without what `sfsync worker` sets up, and says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workers.local.stack import stack_env

pytestmark = pytest.mark.integration


def test_given_a_bare_celery_worker_command_when_started_then_it_stops_pointing_at_sfsync_worker(redis_url, tmp_path):
    env = stack_env(redis_url=redis_url, instance_url="http://127.0.0.1:9", access_token="x", workspace_id="ws")
    out = tmp_path / "celery.out"
    with out.open("wb") as stream:
        code = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.app:app", "worker", "--pool", "solo",
                               "--without-heartbeat", "--without-mingle", "--without-gossip"],
                              env=env, stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=60).returncode
    text = out.read_text(errors="replace")
    assert code != 0, text
    assert "sfsync worker" in text and "Traceback" not in text

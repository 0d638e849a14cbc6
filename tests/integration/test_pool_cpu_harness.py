"""`python -m benchmarks.pool_cpu`: a pool process's CPU per event, measured on a small burst, with its breakdown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.pool_cpu import COMPONENTS
from tests.conftest import SESSION_KEY

ROOT = Path(__file__).resolve().parents[2]


def test_given_a_small_burst_when_the_harness_runs_then_every_event_is_done_and_each_component_has_its_time(
        redis_client, redis_url, tmp_path):
    output = tmp_path / "pool_cpu.txt"
    with output.open("wb") as sink:
        run = subprocess.run([sys.executable, "-m", "benchmarks.pool_cpu", "--events", "400", "--repeat", "1",
                              "--contacts", "300", "--breakdown", "--redis-url", redis_url],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=sink,
                             stderr=subprocess.STDOUT, timeout=180, check=False)
    redis_client.set(SESSION_KEY, str(os.getpid()), ex=6 * 3600)  # the run flushed the database this session holds
    text = output.read_text()
    assert run.returncode == 0, text[-3000:]
    assert re.search(r"burst 0: 400 events in \d+ batches", text), text[-3000:]
    total = float(re.search(r"pool CPU s per 10,000 events: ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    assert total > 0
    shares = {name: float(value) for value, name in re.findall(r"^\s+(-?[\d.]+)  (.+)$", text, re.MULTILINE)}
    # each component's timers caught its functions (one patched where nothing calls it would read 0)
    for component in COMPONENTS:
        assert shares[component] > 0, (component, text[-3000:])
    assert abs(shares["in all"] - total * 100) < 0.2

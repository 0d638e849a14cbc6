"""Health endpoints against a real Redis, and a real prefork worker serving /readyz, /livez and /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from events.redis_conn import free_port
from workers.observability.health import Health, HealthServer, HealthState, RedisCheck

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            body = response.read().decode()
            code = response.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read().decode(), exc.code
    try:
        return code, json.loads(body)
    except json.JSONDecodeError:
        return code, body


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def serve():
    servers: list[HealthServer] = []

    def start(redis_url: str, state: HealthState, **limits) -> HealthServer:
        server = HealthServer(Health(state, RedisCheck(redis_url), **limits), port=0, host="127.0.0.1").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_ready_when_started_and_redis_answers(redis_url, serve):
    # given a worker that has finished starting, and a Redis that answers
    state = HealthState()
    server = serve(redis_url, state)
    assert _get(server.port, "/readyz")[0] == 503  # still starting
    state.mark_ready()
    state.beat()

    # when the orchestrator probes
    ready_code, ready = _get(server.port, "/readyz")
    live_code, live = _get(server.port, "/livez")

    # then both say yes
    assert ready_code == 200 and ready["status"] == "ready", ready
    assert live_code == 200 and live["status"] == "alive", live
    assert _get(server.port, "/nope")[0] == 404


def test_not_ready_with_a_reason_when_redis_is_gone(serve):
    # given a started worker whose Redis port has nothing listening
    state = HealthState()
    state.mark_ready()
    server = serve(f"redis://127.0.0.1:{free_port()}/0", state)

    # when readiness is probed
    started = time.monotonic()
    code, body = _get(server.port, "/readyz")

    # then it is 503 with a JSON reason, answered promptly; liveness stays up (a restart cannot fix Redis)
    assert code == 503 and body["status"] == "not ready"
    assert "redis unreachable" in body["reason"], body
    assert time.monotonic() - started < 3
    assert _get(server.port, "/livez")[0] == 200


def test_redis_verdict_is_cached_for_a_couple_of_seconds(redis_url):
    clock = FakeClock()
    check = RedisCheck(redis_url, clock=clock)
    first = check.verdict()
    clock.now += 1.0
    assert check.verdict() is first
    clock.now += 1.5
    assert check.verdict() is not first and check.verdict().ok
    check.close()


def test_a_silent_consumer_loop_is_reported_dead_only_while_redis_answers(redis_url, serve):
    # given a ready worker whose consumer loop stopped beating 2 minutes ago
    clock = FakeClock()
    state = HealthState(clock=clock)
    state.mark_ready()
    state.beat()
    clock.now += 120
    server = serve(redis_url, state, liveness_timeout=60)

    # then liveness fails, naming the silence
    code, body = _get(server.port, "/livez")
    assert code == 503 and "consumer loop silent" in body["reason"], body

    # and with Redis gone the same silence is expected (the consumer is reconnecting): alive
    dead_redis = serve(f"redis://127.0.0.1:{free_port()}/0", state, liveness_timeout=60)
    assert _get(dead_redis.port, "/livez")[0] == 200


def test_shutting_down_is_not_ready(redis_url, serve):
    state = HealthState()
    state.mark_ready()
    server = serve(redis_url, state)
    state.mark_stopping()
    code, body = _get(server.port, "/readyz")
    assert code == 503 and "shutting down" in body["reason"]


WORKER_SCRIPT = textwrap.dedent("""
    import sys
    from celery import Celery
    from schemas.settings import load_settings
    from workers import observability
    from workers.observability import metrics

    redis_url, metrics_port, health_port = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = load_settings({}, redis_url=redis_url, metrics_port=metrics_port, health_port=health_port)
    app = Celery("obs-worker", broker=redis_url, set_as_current=True)
    app.conf.update(task_default_queue="sfsync.obs-test", result_backend=None, task_ignore_result=True,
                    broker_connection_retry_on_startup=True)

    @app.task(name="obs.record")
    def record(n):
        metrics.record_outcome("email.sent", "written", n)
        metrics.observe_write(0.25)

    observability.install(app, settings, role="worker")
    worker = app.Worker(concurrency=2, pool="prefork", loglevel="INFO", without_heartbeat=True,
                        without_gossip=True, without_mingle=True, queues=["sfsync.obs-test"])
    worker.start()
    sys.exit(worker.exitcode)
""")


def _wait_for(port: int, path: str, code: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = _get(port, path, timeout=2)
            if last[0] == code:
                return last[1]
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{path} did not answer {code} within {timeout}s; last: {last}")


def test_a_real_prefork_worker_serves_health_and_merged_metrics(redis_url, redis_client, tmp_path):
    # given a real prefork worker with observability installed
    metrics_port, health_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SFSYNC_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = str(REPO)
    env["TMPDIR"] = str(tmp_path)
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, redis_url, str(metrics_port), str(health_port)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # when it has started, it is ready and alive
        ready = _wait_for(health_port, "/readyz", 200, timeout=60)
        assert ready["status"] == "ready"
        # the consumer loop's own timer keeps beating (the worker runs --without-heartbeat)
        time.sleep(4.5)
        live_code, live = _get(health_port, "/livez")
        assert live_code == 200 and live["heartbeat_age_seconds"] < 3.0, live

        # and a task run in a prefork child shows up in the main process's /metrics
        from celery import Celery
        client = Celery("obs-client", broker=redis_url, set_as_current=False)
        for n in (2, 3):
            client.send_task("obs.record", args=(n,), queue="sfsync.obs-test")
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and 'outcome="written",type="email.sent"} 5.0' not in text:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
            time.sleep(0.2)
        assert 'sfsync_events_total{outcome="written",type="email.sent"} 5.0' in text, text[-2000:]
        assert "sfsync_write_seconds_count 2.0" in text
        metric_dirs = list(tmp_path.glob("sfsync-metrics-*"))
        assert len(metric_dirs) == 1

        # then a warm shutdown (SIGTERM) exits cleanly and removes the metrics directory
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output[-3000:]
        assert not metric_dirs[0].exists()
        # the worker's own log lines are JSON
        json_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(line.get("message", "").endswith("ready.") for line in json_lines), output[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=10)

"""The Celery-native entry point refuses to run a worker without what `sfsync worker` sets up, and says why."""

from __future__ import annotations

import subprocess
import time
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


def test_given_task_events_on_when_events_are_synced_then_each_batch_shows_as_a_task_run_without_content(stack):
    """What Flower shows: `sfsync worker -E` sends received/started/succeeded for every batch."""
    import threading

    from celery import Celery

    from tests.factories import email_event

    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    seen: list[dict] = []
    monitor = Celery("monitor", broker=stack.redis_url, set_as_current=False)
    ready = threading.Event()

    def capture() -> None:
        with monitor.connection() as connection:
            receiver = monitor.events.Receiver(connection, handlers={"*": seen.append})
            ready.set()
            try:
                receiver.capture(limit=None, timeout=40, wakeup=False)
            except Exception:  # noqa: BLE001 - the timeout ends the capture
                pass

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    ready.wait(10)
    stack.start_worker(extra=("-E",))
    events = [email_event(subject="Secret plans") for _ in range(3)]
    stack.publish(events)
    stack.wait_outcomes([e["id"] for e in events])

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(e.get("type") == "task-succeeded" for e in seen):
        time.sleep(0.2)
    batches = [e for e in seen if e.get("type") == "task-received" and e.get("name") == "sfsync.email.sent"]
    assert batches, [e.get("type") for e in seen]
    finished = {e["uuid"] for e in seen if e.get("type") == "task-succeeded"}
    assert {b["uuid"] for b in batches} <= finished
    assert "Secret plans" not in repr(seen) and "jane.doe" not in repr(seen)

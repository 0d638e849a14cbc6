"""Shared fixtures: a real Redis (the running one, or an embedded one), the emulator, real workers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.outcome_log import OutcomeLog
from events.publish import publish_many
from events.redis_conn import answers, connect, start_embedded
from workers.local.stack import ManagedProcess, stack_env, start_worker

WORKSPACE = "ws_acme"
#: the field mappings integration tests run with (the emulator's org has these fields)
TEST_MAPPINGS = Path(__file__).parent / "data" / "mappings.yaml"


#: a key that marks a Redis database as taken by one test session (flushed with it, so re-set)
SESSION_KEY = "sfsync:test-session"


def _claim_database(base: str) -> str | None:
    """A database of the machine's Redis that no other test session is using right now.

    Test sessions flush their database before each test; two sessions (two developers, or a
    developer and CI) sharing one would consume and erase each other's events.
    """
    for db in range(15, 0, -1):
        url = f"{base}/{db}"
        client = connect(url)
        try:
            if client.set(SESSION_KEY, str(os.getpid()), nx=True, ex=6 * 3600):
                return url
        finally:
            client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """SFSYNC_TEST_REDIS_URL, else a free database of the machine's Redis, else an embedded redis-server.

    SFSYNC_TEST_REDIS_URL=embedded forces the embedded server (what a machine without Redis gets).
    """
    explicit = os.environ.get("SFSYNC_TEST_REDIS_URL")
    if explicit and explicit != "embedded":
        yield explicit
        return
    base = "redis://127.0.0.1:6379"
    url = _claim_database(base) if explicit != "embedded" and answers(base + "/0") else None
    if url:
        try:
            yield url
        finally:
            client = connect(url)
            client.flushdb()
            client.close()
        return
    embedded = start_embedded(db=0)
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture
def redis_client(redis_url):
    client = connect(redis_url)
    client.flushdb()
    client.set(SESSION_KEY, str(os.getpid()), ex=6 * 3600)
    yield client
    client.close()


@pytest.fixture(scope="session")
def emulator_server():
    from salesforce_emulator import EmulatorServer

    with EmulatorServer(port=0) as server:
        yield server


@pytest.fixture
def emulator(emulator_server):
    emulator_server.admin.reset()
    return emulator_server


def wait_until(predicate, timeout: float = 30.0, what: str = "condition", process: ManagedProcess | None = None):
    """Poll `predicate` until it returns something true (returned), or fail naming `what` and the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tail = process.output()[-3000:] if process else ""
    raise AssertionError(f"{what} not reached in {timeout}s\n{tail}")


def records_of(admin, sobject: str, event_ids) -> dict[str, int]:
    """How many records of `sobject` carry each event id."""
    counts = {e: 0 for e in event_ids}
    for record in admin.records(sobject):
        if record.get("Unify_Event_Id__c") in counts:
            counts[record["Unify_Event_Id__c"]] += 1
    return counts


class Stack:
    """Real Redis + emulator + real worker processes, and the means to publish and wait."""

    def __init__(self, redis_url: str, redis_client, emulator):
        self.redis_url = redis_url
        self.redis = redis_client
        self.emulator = emulator
        self.admin = emulator.admin
        self.processes: list[ManagedProcess] = []
        self.outcomes = OutcomeLog(redis_client)

    def env(self, **overrides) -> dict[str, str]:
        overrides.setdefault("mappings", TEST_MAPPINGS)
        overrides.setdefault("flush_interval", 0.3)
        overrides.setdefault("retry_backoff", 0.2)
        overrides.setdefault("retry_backoff_max", 2)
        return stack_env(redis_url=self.redis_url, instance_url=self.emulator.url,
                         access_token=self.emulator.token, workspace_id=WORKSPACE, **overrides)

    def start_worker(self, concurrency: int = 1, extra: tuple[str, ...] = (), **overrides) -> ManagedProcess:
        process = start_worker(self.env(**overrides), concurrency=concurrency, extra=extra)
        self.processes.append(process)
        return process

    def publish(self, events, **kwargs):
        published, _ = publish_many(events, broker_url=self.redis_url, **kwargs)
        return published

    def recent_outcomes(self, workspace: str = WORKSPACE, count: int = 100) -> list[dict[str, str]]:
        """The newest outcome entries of a workspace, newest first."""
        rows = self.redis.xrevrange(f"sfsync:{{{workspace}}}:outcomes", count=count)
        return [fields for _, fields in rows]

    def wait_outcomes(self, event_ids, timeout: float = 60.0, workspace: str = WORKSPACE) -> dict[str, dict]:
        """Block until every event has a final outcome; returns event id -> outcome entry."""
        wanted = set(event_ids)
        found = self.outcomes.wait_final(workspace, wanted, timeout, poll=0.2)
        if len(found) == len(wanted):
            return found
        logs = "\n".join(p.output()[-3000:] for p in self.processes)
        raise AssertionError(f"{len(wanted) - len(found)} of {len(wanted)} events without a final outcome "
                             f"after {timeout}s; worker output:\n{logs}")

    def close(self) -> None:
        for process in self.processes:
            process.terminate(timeout=20)


@pytest.fixture
def stack(redis_url, redis_client, emulator) -> Iterator[Stack]:
    s = Stack(redis_url, redis_client, emulator)
    try:
        yield s
    finally:
        s.close()

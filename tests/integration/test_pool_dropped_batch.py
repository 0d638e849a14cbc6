"""A batch Celery's pool drops when the broker connection goes: its process slot comes back and its events are written.

When the worker loses its broker connection, Celery's consumer flushes the prefork pool before
reconnecting (Consumer.on_close -> AsynPool.flush), and the pool forgets every job a process has
not yet accepted, without calling either of its callbacks. A batch handed to the pool in that
moment would otherwise keep its process slot taken and its messages' leases renewed for the rest
of the worker's life: with one process, nothing would be written again.

Here the moment is made wide on purpose: the pool's only process is stopped (SIGSTOP), so the
batch handed to it is written to its pipe but never accepted, and the consumer's BRPOP
connection is then killed from Redis's side.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest

from events.fleet import Fleet
from events.redis_conn import free_port
from events.topology import ALL_QUEUES
from tests.conftest import records_of, wait_until
from tests.factories import email_event

pytestmark = pytest.mark.integration

def pool_processes(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def in_flight(client) -> int | None:
    workers = [m for m in Fleet(client).members() if m.kind == "worker" and not m.stopped]
    return workers[0].batches_in_flight if workers else None


def kill_consumer_connections(client, db: int) -> int:
    """Close, from Redis's side, every connection of this test's database that last ran BRPOP."""
    killed = 0
    for entry in client.client_list():
        if str(entry.get("db")) == str(db) and entry.get("cmd") in ("brpop", "evalsha", "eval"):
            killed += client.client_kill_filter(_id=entry["id"])
    return killed


def held(client) -> int:
    return client.hlen("unacked") + sum(client.llen(q) for q in ALL_QUEUES)


def test_given_a_batch_not_yet_accepted_when_the_broker_connection_drops_then_its_slot_returns_and_all_is_written(
        stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    metrics_port = free_port()
    worker = stack.start_worker(concurrency=1, metrics_port=metrics_port)
    warm = [email_event() for _ in range(2)]
    stack.publish(warm)
    stack.wait_outcomes([e["id"] for e in warm], timeout=30)
    wait_until(lambda: in_flight(stack.redis) == 0, 15, "a heartbeat with no batch in flight", worker)

    [process] = pool_processes(worker.proc.pid)
    os.kill(process, signal.SIGSTOP)
    try:
        dropped = [email_event() for _ in range(3)]
        stack.publish(dropped)
        # handed to the pool: written to the stopped process's pipe, never accepted
        wait_until(lambda: in_flight(stack.redis) == 1, 15, "the batch handed to the pool", worker)
        db = stack.redis.connection_pool.connection_kwargs.get("db", 0)
        wait_until(lambda: kill_consumer_connections(stack.redis, db), 10, "the consumer's connection killed", worker)
        wait_until(lambda: "Connected to" in worker.output().partition("Connection to broker lost")[2], 30,
                   "the consumer reconnected", worker)
    finally:
        os.kill(process, signal.SIGCONT)

    later = [email_event() for _ in range(3)]
    stack.publish(later)
    ids = [e["id"] for e in warm + dropped + later]
    outcomes = stack.wait_outcomes(ids, timeout=60)
    # the stopped process syncs the dropped batch once it runs again; the batch handed back then
    # finds its events written (an outcome of "duplicate")
    assert {outcomes[e["id"]]["outcome"] for e in warm + later} == {"written"}, outcomes
    assert {outcomes[e["id"]]["outcome"] for e in dropped} <= {"written", "duplicate"}, outcomes
    assert set(records_of(stack.admin, "EmailMessage", ids).values()) == {1}
    # nothing is held for ever: the slot was given back and no lease is renewed for a forgotten batch
    wait_until(lambda: held(stack.redis) == 0, 60, "no message left queued or unacknowledged", worker)
    wait_until(lambda: in_flight(stack.redis) == 0, 15, "the process slot given back", worker)
    assert "dropped by the pool" in worker.output(), worker.output()[-3000:]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    assert 'sfsync_batches_handed_back_total{reason="dropped_by_pool"} 1.0' in metrics, metrics
    assert worker.running

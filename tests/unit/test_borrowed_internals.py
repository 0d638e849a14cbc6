"""What sfsync borrows from Celery, kombu and billiard is still what it was written against.

workers/broker_guard.py copies kombu's `Channel._brpop_read` (with the envelope checked before
kombu parses it) and swaps `Transport.Channel`; it reads the QoS's `_delivered`; the consumer's
shutdown watchdog reads the pool's processes from billiard's `_pool._pool`; the take script
(events/lua/broker_take.lua) writes kombu's unacknowledged record in the format of `QoS.append`,
and GuardedQoS/GuardedChannel lean on `_remove_from_indices`, `can_consume_max_estimate`, the
virtual QoS's own append and ack, and the virtual Channel's `_tag_to_queue`; the batch tasks hook
Celery's consumer through `Task.Strategy`; the consumer recognises a batch the pool forgot at a
lost connection (Consumer.on_close flushes it) by billiard's ApplyResult `_cache` and `_job`; a pool
process decodes a held message's JSON as kombu's decoder does, by json.loads with kombu's object hook,
which changes only objects keyed "__type__" and "__value__" (workers/consumer/batches.py). None of that is public API, so the versions are pinned
to the tested minors in pyproject.toml, and these tests fail as soon as an installed version
differs: re-read the borrowed code against the new one, adapt the copy, then update the pin and
the fingerprint below.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import tomllib
from pathlib import Path

import billiard
import celery
import kombu
from kombu.transport import redis as kombu_redis

from workers import broker_guard

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
#: sha256 of kombu 5.7's `Channel._brpop_read` source, which GuardedChannel._brpop_read copies
BRPOP_READ_SHA256 = "c42518699709f2df90f55a048fe6346612ae5527e5c4a6819f2c0920dc62088f"
#: sha256 of kombu 5.7's redis `QoS.append` source, whose unacked record broker_take.lua writes too
QOS_APPEND_SHA256 = "35c655f6ecc62fe6e9902f7498dde9b47ff27187973d7568e02529c400027416"


def _pinned(name: str) -> tuple[str, str]:
    """(lowest, highest excluded) version pyproject.toml allows for a dependency."""
    for spec in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        if re.match(rf"{name}(\[.*\])?[><=]", spec):
            low, high = re.search(r">=([\d.]+),<([\d.]+)", spec).groups()
            return low, high
    raise AssertionError(f"{name} is not a dependency")


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_given_the_borrowed_libraries_when_pinned_then_each_is_held_to_one_tested_minor_and_installed_so():
    for name, module in (("celery", celery), ("kombu", kombu), ("billiard", billiard)):
        low, high = _pinned(name)
        assert _minor(high) == (_minor(low)[0], _minor(low)[1] + 1), f"{name} must be held to one minor: {low}..{high}"
        assert _minor(module.__version__) == _minor(low), f"installed {name} {module.__version__} is not the tested {low}"


def test_given_kombus_unacked_record_when_fingerprinted_then_it_is_the_one_the_take_script_writes():
    source = inspect.getsource(kombu_redis.QoS.append)
    assert hashlib.sha256(source.encode()).hexdigest() == QOS_APPEND_SHA256, (
        "kombu's QoS.append changed: compare its unacked record with events/lua/broker_take.lua\n" + source)
    for step in ("pipe.zadd(self.unacked_index_key", ".hset(self.unacked_key, delivery_tag",
                 "dumps([message._raw, EX, RK])"):
        assert step in source
    # what GuardedQoS and GuardedChannel call besides
    assert callable(kombu_redis.QoS._remove_from_indices) and callable(kombu_redis.QoS.can_consume_max_estimate)
    assert "_quick_append" in inspect.getsource(kombu.transport.virtual.QoS.append)
    assert "_quick_ack" in inspect.getsource(kombu.transport.virtual.QoS.ack)
    assert "self._tag_to_queue[consumer_tag] = queue" in inspect.getsource(kombu.transport.virtual.Channel.basic_consume)


def test_given_kombus_brpop_read_when_fingerprinted_then_it_is_the_one_broker_guard_copies():
    source = inspect.getsource(kombu_redis.Channel._brpop_read)

    assert hashlib.sha256(source.encode()).hexdigest() == BRPOP_READ_SHA256, (
        "kombu's Channel._brpop_read changed: compare it with GuardedChannel._brpop_read in "
        f"workers/broker_guard.py and carry the change over\n{source}")
    # the steps the copy relies on are still the ones kombu takes
    for step in ("parse_response(self.client.connection", "self._queue_cycle.rotate(dest)",
                 "self.connection._deliver(loads(bytes_to_str(item)), dest)", "self._in_poll = None"):
        assert step in source


def test_given_the_channel_swap_when_a_connection_is_made_then_its_channel_is_the_guarded_one(redis_url, monkeypatch):
    monkeypatch.setattr(kombu_redis.Transport, "Channel", kombu_redis.Transport.Channel)
    monkeypatch.setattr(kombu_redis.SentinelTransport, "Channel", kombu_redis.SentinelTransport.Channel)
    monkeypatch.setattr(broker_guard.GuardedChannel, "on_unreadable", None)
    monkeypatch.setattr(broker_guard.GuardedChannel, "tasks_by_queue", {})
    broker_guard.install(lambda *_: None, {})

    with kombu.Connection(redis_url) as connection:
        channel = connection.default_channel
        assert isinstance(channel, broker_guard.GuardedChannel)
        # the unacked bookkeeping the guard reads and drops from (`_forget`)
        qos = channel.qos
        assert isinstance(qos._delivered, dict)
        message = channel.Message({"body": "", "properties": {"delivery_tag": "t-1", "delivery_info": {
            "exchange": "", "routing_key": "q"}}, "headers": {}, "content-type": "application/json"}, channel=channel)
        qos.append(message, "t-1")
        assert "t-1" in qos._delivered and channel.client.hexists(channel.unacked_key, "t-1")
        qos.ack("t-1")
        assert not channel.client.hexists(channel.unacked_key, "t-1")
        qos.append(message, "t-2")  # acks leave `_delivered` when kombu next appends
        assert list(qos._delivered) == ["t-2"]
        qos.ack("t-2")


def test_given_a_prefork_pool_when_started_then_its_processes_are_where_the_shutdown_watchdog_looks():
    from celery.concurrency.prefork import TaskPool

    from workers.consumer.dispatch import pool_processes

    pool = TaskPool(limit=1)
    pool.start()
    try:
        pids = pool_processes(pool)
        assert len(pids) == 1
        os.kill(pids[0], 0)  # alive
    finally:
        pool.stop()
        pool.terminate()


def test_given_celerys_task_when_a_consumer_starts_then_it_asks_the_tasks_strategy_hook():
    source = inspect.getsource(celery.app.task.Task.start_strategy)

    assert "self.Strategy, self, app, consumer" in source
    from celery.worker.consumer.consumer import Consumer

    for hook in ("update_strategies", "on_decode_error", "on_unknown_message", "on_unknown_task", "on_invalid_task"):
        assert callable(getattr(Consumer, hook)), hook


def test_given_a_decoding_redis_client_when_a_script_reply_is_asked_undecoded_then_its_bytes_come_back(redis_client):
    # events/lua/undecoded leans on redis-py's NEVER_DECODE option (what its own DUMP uses): an
    # overflow entry that is not UTF-8 must not make a whole claim unreadable
    from events.lua import undecoded

    redis_client.zadd("sfsync:test:lot", {b"\xff-not-text": 1})

    assert undecoded(redis_client, "parking_claim", ["sfsync:test:lot"], [2, 3, 10]) == [b"\xff-not-text"]


def test_given_a_lost_broker_connection_when_celery_flushes_its_pool_then_jobs_sees_what_it_forgot():
    # Consumer.on_close flushes the prefork pool, which forgets every job not yet accepted by a
    # process without calling its callbacks; workers/consumer/dispatch.py (Jobs) recognises such a
    # job as billiard's ApplyResult that is not ready and no longer in its pool's cache
    from billiard.pool import ApplyResult
    from celery.concurrency.asynpool import AsynPool
    from celery.worker.consumer.consumer import Consumer

    from workers.consumer.dispatch import forgotten

    assert "self.pool.flush()" in inspect.getsource(Consumer.on_close)
    flush = inspect.getsource(AsynPool.flush)
    assert "if not job._accepted" in flush and "job.discard()" in flush
    cache: dict = {}
    job = ApplyResult(cache, callback=None)
    assert cache[job._job] is job and not job.ready() and not forgotten(job)
    job.discard()
    assert forgotten(job)


def test_given_kombus_json_decoder_when_read_then_it_is_utf8_then_json_with_a_hook_for_type_markers_only():
    from kombu.serialization import registry
    from kombu.utils import json as kombu_json

    # application/json bodies go through kombu.utils.json.loads, after a strict decode of their bytes
    assert registry._decoders["application/json"] is kombu_json.loads
    assert inspect.signature(kombu_json.loads).parameters["object_hook"].default is kombu_json.object_hook
    plain = {"a": 1, "__type__": "datetime"}
    assert kombu_json.object_hook(plain) is plain  # only the exact pair of keys is turned into something else
    assert kombu_json.object_hook({"__type__": "bytes", "__value__": "x"}) == b"x"

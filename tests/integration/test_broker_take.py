"""Several messages per round trip: the take script after each BRPOP, kombu's unacknowledged set kept as kombu keeps it.

Real Redis, kombu's own Connection, Producer and Consumer over the guarded channel.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from kombu.transport import redis as kombu_redis

from workers import broker_guard
from workers.consumer.leases import shed


class _CountingQoS(broker_guard.GuardedQoS):
    """The guarded QoS, counting the Redis pipelines it opens (kombu opens one per message received)."""

    pipelines = 0

    def pipe_or_acquire(self, pipe=None, client=None):
        if pipe is None:
            type(self).pipelines += 1
        return super().pipe_or_acquire(pipe, client)


class _CountingChannel(broker_guard.GuardedChannel):
    """The guarded channel, counting its BRPOP replies (one per round trip kombu alone would make per message)."""

    QoS = _CountingQoS
    brpop_reads = 0

    def _brpop_read(self, **options):
        type(self).brpop_reads += 1
        return super()._brpop_read(**options)


@pytest.fixture
def guarded(redis_url, redis_client, monkeypatch) -> Iterator[dict[str, Any]]:
    unreadable: list[tuple[str, bytes, Any]] = []
    monkeypatch.setattr(kombu_redis.Transport, "Channel", kombu_redis.Transport.Channel)
    monkeypatch.setattr(kombu_redis.SentinelTransport, "Channel", kombu_redis.SentinelTransport.Channel)
    monkeypatch.setattr(broker_guard.GuardedChannel, "on_unreadable", None)
    monkeypatch.setattr(broker_guard.GuardedChannel, "tasks_by_queue", {})
    broker_guard.install(lambda queue, raw, why: unreadable.append((queue, raw, why)), {})
    monkeypatch.setattr(kombu_redis.Transport, "Channel", _CountingChannel)
    monkeypatch.setattr(_CountingChannel, "brpop_reads", 0)
    monkeypatch.setattr(_CountingQoS, "pipelines", 0)
    name = f"sfsync.test.take.{uuid.uuid4().hex[:8]}"
    yield {"url": redis_url, "redis": redis_client, "queue": kombu.Queue(name, routing_key=name),
           "name": name, "unreadable": unreadable}


def _publish(connection: kombu.Connection, queue: kombu.Queue, count: int, start: int = 0) -> None:
    producer = kombu.Producer(connection.default_channel, routing_key=queue.routing_key)
    queue(connection.default_channel).declare()
    for n in range(start, start + count):
        producer.publish({"n": n}, routing_key=queue.routing_key, serializer="json",
                         headers={"id": f"task-{n}", "task": "t"})


def _receive(connection: kombu.Connection, queue: kombu.Queue, prefetch: int, want: int) -> list[Any]:
    """Messages received (not acknowledged) until `want` came or nothing more arrives; bounded."""
    received: list[Any] = []
    consumer = kombu.Consumer(connection.default_channel, queues=[queue], callbacks=[lambda body, m: received.append(m)],
                              accept=["json"], prefetch_count=prefetch)
    consumer.consume()
    for _ in range(want + 20):
        if len(received) >= want:
            break
        try:
            connection.drain_events(timeout=0.5)
        except TimeoutError:
            break
    return received


def _ack_all(messages: list[Any]) -> None:
    """Acknowledge every message, together."""
    with broker_guard.acks_together(messages):
        for message in messages:
            message.ack()


def test_given_a_queue_of_250_when_consumed_then_each_comes_once_in_order_in_a_few_round_trips(guarded):
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 250)
        received = _receive(connection, guarded["queue"], prefetch=1000, want=250)
        assert [m.payload["n"] for m in received] == list(range(250))
        rounds = 250 // (broker_guard.TAKE_AT_ONCE + 1) + 2
        assert _CountingChannel.brpop_reads <= rounds
        # kombu recorded only what BRPOP read; the script recorded the rest (no envelope sent back)
        assert _CountingQoS.pipelines <= rounds
        channel = connection.default_channel
        redis = guarded["redis"]
        # every one is in kombu's unacknowledged set, in kombu's own format, under its delivery tag
        assert redis.zcard(channel.unacked_index_key) == redis.hlen(channel.unacked_key) == 250
        for message in received:
            stored, exchange, routing_key = json.loads(redis.hget(channel.unacked_key, message.delivery_tag))
            assert stored == message._raw
            assert (exchange, routing_key) == (message.delivery_info["exchange"], message.delivery_info["routing_key"])
        assert channel.qos.recorded == set()
        before = _CountingQoS.pipelines
        with broker_guard.acks_together(received):
            for message in received:
                message.ack()
            assert redis.hlen(channel.unacked_key) == 250  # removed together, when the block ends
        assert redis.zcard(channel.unacked_index_key) == redis.hlen(channel.unacked_key) == 0
        assert _CountingQoS.pipelines == before + 1
        assert len(channel.qos._delivered) - len(channel.qos._dirty) == 0


def test_given_the_prefetch_limit_when_consuming_then_no_more_are_taken_than_it_allows(guarded):
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 250)
        received = _receive(connection, guarded["queue"], prefetch=30, want=250)
        assert len(received) == 30
        assert guarded["redis"].llen(guarded["name"]) == 220
        assert guarded["redis"].hlen(connection.default_channel.unacked_key) == 30


def test_given_taken_messages_never_acknowledged_when_the_channel_closes_then_kombu_puts_them_back(guarded):
    redis = guarded["redis"]
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 120)
        received = _receive(connection, guarded["queue"], prefetch=1000, want=120)
        assert len(received) == 120
    # kombu restores what a closing channel holds unacknowledged (restore_at_shutdown)
    assert redis.llen(guarded["name"]) == 120 and redis.hlen("unacked") == 0
    with kombu.Connection(guarded["url"]) as connection:
        again = _receive(connection, guarded["queue"], prefetch=1000, want=120)
        assert sorted(m.payload["n"] for m in again) == list(range(120))
        _ack_all(again)


def test_given_unreadable_items_among_the_taken_then_they_are_dead_lettered_and_not_left_unacknowledged(guarded):
    redis = guarded["redis"]
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 1)  # BRPOP reads this one; the script takes the rest
        good = json.loads(redis.lindex(guarded["name"], 0))
        redis.lpush(guarded["name"], b"not json at all")
        refused = {**good, "headers": ["a list"], "properties": {**good["properties"], "delivery_tag": "tag-r"}}
        redis.lpush(guarded["name"], json.dumps(refused))  # recorded by the script, then refused
        redis.lpush(guarded["name"], json.dumps({**good, "properties": {**good["properties"], "delivery_tag": 7}}))
        second = {**good, "properties": {**good["properties"], "delivery_tag": "tag-2"}}
        redis.lpush(guarded["name"], json.dumps(second))
        received = _receive(connection, guarded["queue"], prefetch=1000, want=3)
        tags = sorted(str(m.delivery_tag) for m in received)
        assert tags == sorted([good["properties"]["delivery_tag"], "7", "tag-2"])
        assert [why.code for _, _, why in guarded["unreadable"]] == ["INVALID_ENVELOPE", "INVALID_ENVELOPE"]
        assert sorted(redis.hkeys(connection.default_channel.unacked_key)) == tags
        assert connection.default_channel.qos.recorded == set()
        _ack_all(received)
        assert redis.hlen(connection.default_channel.unacked_key) == 0


def test_given_redis_refuses_the_script_then_messages_are_read_one_at_a_time(guarded, monkeypatch):
    monkeypatch.setattr(broker_guard, "lua_script", lambda client, name: client.register_script("return {"))
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 20)
        received = _receive(connection, guarded["queue"], prefetch=1000, want=20)
        assert [m.payload["n"] for m in received] == list(range(20))
        assert _CountingChannel.brpop_reads >= 20
        assert guarded["redis"].hlen(connection.default_channel.unacked_key) == 20
        _ack_all(received)


def test_given_held_messages_shed_when_acknowledged_or_handed_back_then_redis_agrees(guarded):
    redis = guarded["redis"]
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 40)
        received = _receive(connection, guarded["queue"], prefetch=1000, want=40)
        for message in received:
            shed(message)
            assert message.body is None and message.headers == {} and message.properties == {}
            assert message.delivery_tag and message.delivery_info["routing_key"] == guarded["name"]
        kept, back = received[:30], received[30:]
        _ack_all(kept)
        for message in back:
            message.reject(requeue=True)
        assert redis.hlen(connection.default_channel.unacked_key) == 0
        assert redis.llen(guarded["name"]) == 10  # handed back whole, from Redis's own copy
        again = _receive(connection, guarded["queue"], prefetch=1000, want=10)
        assert sorted(m.payload["n"] for m in again) == list(range(30, 40))
        _ack_all(again)


def test_given_a_consumer_without_acknowledgements_then_nothing_is_recorded_as_unacknowledged(guarded):
    # Celery's control replies are read this way: a record of them would never be acknowledged, and
    # kombu would put them back on their queue after every visibility timeout
    redis = guarded["redis"]
    with kombu.Connection(guarded["url"]) as connection:
        _publish(connection, guarded["queue"], 60)
        received: list[Any] = []
        consumer = kombu.Consumer(connection.default_channel, queues=[guarded["queue"]], no_ack=True,
                                  callbacks=[lambda body, m: received.append(m)], accept=["json"])
        consumer.consume()
        for _ in range(80):
            if len(received) >= 60:
                break
            connection.drain_events(timeout=0.5)
        assert [m.payload["n"] for m in received] == list(range(60))
        assert redis.hlen(connection.default_channel.unacked_key) == 0
        assert redis.zcard(connection.default_channel.unacked_index_key) == 0
        consumer.cancel()
        assert guarded["queue"].name not in connection.default_channel.no_ack_queues

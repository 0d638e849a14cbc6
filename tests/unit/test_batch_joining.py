"""The consumer's buffer: what a workspace sends while its batch waits for the pool joins that batch."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

from workers.batching import Buffer, Dispatcher, Holdings

_tags = itertools.count()


class FakeMessage:
    def __init__(self, workspace: str):
        self.delivery_tag = f"tag-{next(_tags)}"
        self.headers = {"id": self.delivery_tag}
        self.delivery_info = {"routing_key": "sfsync.email"}
        self.body = json.dumps([[{"workspace_id": workspace}], {}, {}]).encode()
        self.acked = False

    def decode(self):
        return json.loads(self.body)

    def ack_log_error(self, *_):
        self.acked = True


class FakePool:
    """A pool that takes batches and finishes them only when told."""

    def __init__(self):
        self.running: list[tuple[list, object]] = []

    def apply_async(self, _fn, args, callback=None, **_kwargs):
        self.running.append((args[2], callback))

    def finish_first(self):
        messages, callback = self.running.pop(0)
        callback(len(messages))


def buffer_with_one_pool_slot() -> tuple[Buffer, FakePool, Holdings]:
    pool, holdings = FakePool(), Holdings()
    consumer = SimpleNamespace(pool=pool, qos=SimpleNamespace(value=10_000), event_dispatcher=None,
                               timer=SimpleNamespace(call_repeatedly=lambda *_: SimpleNamespace(cancel=lambda: None)))
    task = SimpleNamespace(flush_every=200, flush_interval=1.0, name="sfsync.email", queue="sfsync.email")
    return Buffer(task, consumer, holdings, lambda _ws: 1_000.0, Dispatcher(1)), pool, holdings


def send(buffer: Buffer, workspace: str, n: int) -> list[FakeMessage]:
    messages = [FakeMessage(workspace) for _ in range(n)]
    for message in messages:
        buffer.on_message(message, None, None, None, None)
    return messages


def test_given_a_busy_pool_when_a_workspace_flushes_twice_then_its_second_bucket_joins_the_waiting_batch():
    buffer, pool, _ = buffer_with_one_pool_slot()
    send(buffer, "ws_a", 1)
    buffer.flush("ws_a")  # takes the only pool slot
    first, second = send(buffer, "ws_b", 2), None
    buffer.flush("ws_b")
    second = send(buffer, "ws_b", 3)
    buffer.flush("ws_b")

    pool.finish_first()

    assert [len(messages) for messages, _ in pool.running] == [5]
    pool.finish_first()
    assert all(m.acked for m in first + second)


def test_given_a_waiting_batch_that_is_full_when_more_comes_then_a_new_batch_is_made():
    buffer, pool, _ = buffer_with_one_pool_slot()
    send(buffer, "ws_a", 1)
    buffer.flush("ws_a")
    send(buffer, "ws_b", 150)
    buffer.flush("ws_b")
    send(buffer, "ws_b", 120)
    buffer.flush("ws_b")

    pool.finish_first()
    pool.finish_first()

    assert [len(messages) for messages, _ in pool.running] == [70]


def test_given_a_batch_already_running_when_the_workspace_flushes_again_then_nothing_joins_it():
    buffer, pool, _ = buffer_with_one_pool_slot()
    send(buffer, "ws_b", 2)
    buffer.flush("ws_b")
    send(buffer, "ws_b", 3)
    buffer.flush("ws_b")

    pool.finish_first()

    assert [len(messages) for messages, _ in pool.running] == [3]


def test_given_joined_batches_waiting_when_the_buffer_stops_then_every_held_lease_is_let_go():
    buffer, _, holdings = buffer_with_one_pool_slot()
    send(buffer, "ws_a", 1)
    buffer.flush("ws_a")
    send(buffer, "ws_b", 2)
    buffer.flush("ws_b")
    waiting = send(buffer, "ws_b", 3)
    buffer.flush("ws_b")

    buffer.stop()

    assert not {m.delivery_tag for m in waiting} & holdings.tags
    assert buffer.waiting == {}


def test_given_a_drain_and_a_batch_waiting_when_a_slot_frees_then_the_batch_goes_first():
    from workers.batching import DRAIN

    started, finish = [], []
    dispatcher = Dispatcher(1)
    dispatcher.submit("ws_a", ["m"], lambda finished: (started.append("a"), finish.append(finished)))
    dispatcher.submit("ws_flood", [], lambda finished: (started.append("drain"), finish.append(finished)), kind=DRAIN)
    dispatcher.submit("ws_b", ["m"], lambda finished: (started.append("b"), finish.append(finished)))

    finish[0]()
    finish[1]()

    assert started == ["a", "b", "drain"]


def test_given_a_drain_that_waited_its_patience_when_a_slot_frees_then_it_takes_its_turn(monkeypatch):
    from workers import batching

    monkeypatch.setattr(batching, "DRAIN_PATIENCE", 0.0)
    started, finish = [], []
    dispatcher = Dispatcher(1)
    dispatcher.submit("ws_a", ["m"], lambda finished: (started.append("a"), finish.append(finished)))
    dispatcher.submit("ws_flood", [], lambda finished: (started.append("drain"), finish.append(finished)),
                      kind=batching.DRAIN)
    dispatcher.submit("ws_b", ["m"], lambda finished: (started.append("b"), finish.append(finished)))

    finish[0]()

    assert started == ["a", "drain"]

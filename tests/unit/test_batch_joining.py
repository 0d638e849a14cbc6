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
        #: per batch handed over, the workspace whose overflow it drains (None: none)
        self.drains: list[str | None] = []

    def apply_async(self, _fn, args, callback=None, **_kwargs):
        self.running.append((args[1], callback))
        self.drains.append(args[2])

    def finish_first(self):
        messages, callback = self.running.pop(0)
        callback(len(messages))


def buffer_with_one_pool_slot() -> tuple[Buffer, FakePool, Holdings]:
    pool, holdings = FakePool(), Holdings()
    consumer = SimpleNamespace(pool=pool, qos=SimpleNamespace(value=10_000), event_dispatcher=None,
                               timer=SimpleNamespace(call_repeatedly=lambda *_: SimpleNamespace(cancel=lambda: None)))
    return Buffer(SENT, consumer, holdings, lambda _ws: 1_000.0, Dispatcher(1)), pool, holdings


SENT = SimpleNamespace(flush_every=200, flush_interval=1.0, name="sfsync.email.sent", queue="email.sent")
REPLIED = SimpleNamespace(flush_every=200, flush_interval=1.0, name="sfsync.email.replied", queue="email.replied")


def send(buffer: Buffer, workspace: str, n: int, task=SENT) -> list[FakeMessage]:
    receive = buffer.receiver(task)
    messages = [FakeMessage(workspace) for _ in range(n)]
    for message in messages:
        receive(message, None, None, None, None)
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


def test_given_a_workspace_sending_on_two_queues_when_its_bucket_goes_then_one_batch_carries_both():
    # an email sent and a reply of one workspace: one contact lookup and one write for both
    buffer, pool, _ = buffer_with_one_pool_slot()
    buffer.add(REPLIED)
    send(buffer, "ws_a", 2, SENT)
    send(buffer, "ws_a", 1, REPLIED)

    buffer.flush("ws_a")

    [(batch, _)] = pool.running
    assert [(q.task, q.queue) for q in batch] == [("sfsync.email.sent", "email.sent")] * 2 + [
        ("sfsync.email.replied", "email.replied")]


class FakeOverflow:
    def __init__(self, pending: dict[str, int]):
        self.waiting = pending

    def workspaces(self):
        return list(self.waiting)

    def pending(self, workspaces):
        return {ws: self.waiting[ws] for ws in workspaces if self.waiting.get(ws)}


def test_given_a_workspace_with_an_overflow_when_its_bucket_goes_then_the_batch_drains_it_too():
    buffer, pool, _ = buffer_with_one_pool_slot()
    buffer.overflow = FakeOverflow({"ws_a": 3})
    buffer.drain_overflows()  # 3 entries, younger than the linger: no drain of its own yet
    assert pool.running == []
    send(buffer, "ws_a", 2)

    buffer.flush("ws_a")

    assert [len(batch) for batch, _ in pool.running] == [2] and pool.drains == ["ws_a"]


def test_given_an_overflow_that_waited_its_linger_when_its_drain_waits_then_the_bucket_joins_it():
    buffer, pool, _ = buffer_with_one_pool_slot()
    buffer.lingers = lambda _ws: 0.0
    buffer.overflow = FakeOverflow({"ws_a": 3})
    send(buffer, "ws_b", 1)
    buffer.flush("ws_b")  # takes the only pool slot
    buffer.drain_overflows()  # ws_a's drain waits for the slot
    send(buffer, "ws_a", 2)
    buffer.flush("ws_a")

    pool.finish_first()

    assert [len(batch) for batch, _ in pool.running] == [2] and pool.drains[-1] == "ws_a"


def test_given_a_consumer_start_when_every_batch_task_asks_for_its_strategy_then_they_share_one_buffer(monkeypatch):
    from workers.batching import BatchTask

    monkeypatch.setattr(BatchTask, "shared", None)
    monkeypatch.setattr(BatchTask, "dispatcher", None)
    monkeypatch.setattr(BatchTask, "overflow_factory", None)

    def consumer_with(connection):
        return SimpleNamespace(pool=FakePool(), qos=SimpleNamespace(value=10_000), event_dispatcher=None,
                               connection=connection,
                               timer=SimpleNamespace(call_repeatedly=lambda *_: SimpleNamespace(cancel=lambda: None)))

    first = consumer_with(object())
    BatchTask.Strategy(SENT, SENT, None, first)
    BatchTask.Strategy(REPLIED, REPLIED, None, first)
    buffer = BatchTask.shared[1]
    assert buffer.queues() == ["email.replied", "email.sent"]

    held = send(buffer, "ws_a", 2)
    again = consumer_with(object())  # the broker connection was lost and made anew
    BatchTask.Strategy(SENT, SENT, None, again)

    assert BatchTask.shared[1] is not buffer and BatchTask.shared[1].queues() == ["email.sent"]
    assert buffer.pending == {} and not {m.delivery_tag for m in held} & BatchTask.holdings.tags


def test_given_a_quiet_workspaces_small_overflow_when_drained_then_it_takes_its_turn_like_a_batch():
    buffer, pool, _ = buffer_with_one_pool_slot()
    buffer.lingers = lambda _ws: 0.0
    buffer.overflow = FakeOverflow({"ws_quiet": 3, "ws_flood": 5_000})
    send(buffer, "ws_b", 1)
    buffer.flush("ws_b")  # takes the only pool slot
    buffer.drain_overflows()  # both drains wait for the slot
    send(buffer, "ws_c", 1)
    buffer.flush("ws_c")

    for _ in range(3):
        pool.finish_first()

    # the quiet workspace's drain went in its turn; the flood's let ws_c's batch go first
    assert pool.drains == [None, "ws_quiet", None, "ws_flood"]


def test_given_another_workspaces_batch_due_shortly_when_a_floods_drains_wait_then_one_process_is_kept_free_for_it():
    import time

    from workers import batching

    started, finish = [], []
    dispatcher = Dispatcher(2)

    def job(name):
        return lambda finished: (started.append(name), finish.append(finished))

    dispatcher.next_batch_due = time.monotonic() + 0.5  # a quiet workspace's bucket is due in half a second
    dispatcher.submit("ws_flood", [], job("drain1"), kind=batching.DRAIN)
    dispatcher.submit("ws_flood", [], job("drain2"), kind=batching.DRAIN)
    assert started == ["drain1"]  # the second process waits for the quiet workspace

    dispatcher.submit("ws_quiet", ["m"], job("quiet"))
    assert started == ["drain1", "quiet"]

    dispatcher.next_batch_due = float("inf")  # nobody else has anything due: the flood may use both
    finish[-1]()
    assert started == ["drain1", "quiet", "drain2"]


def test_given_a_full_batch_of_a_workspace_waiting_when_its_overflow_is_due_then_it_gets_a_drain_of_its_own():
    # a full batch has no room to take the overflow along: waiting for it would strand the overflow
    buffer, pool, _ = buffer_with_one_pool_slot()
    buffer.lingers = lambda _ws: 0.0
    buffer.overflow = FakeOverflow({"ws_a": 3})
    send(buffer, "ws_b", 1)
    buffer.flush("ws_b")  # takes the only pool slot
    send(buffer, "ws_a", 200)  # a whole bucket: it goes at once and waits for the slot
    buffer.drain_overflows()

    pool.finish_first()
    pool.finish_first()

    assert [len(batch) for batch, _ in pool.running] == [0] and pool.drains[-1] == "ws_a"


def test_given_a_batch_when_monitors_are_told_then_it_is_named_for_the_tasks_its_messages_came_for():
    from workers.batching import QueuedMessage, batch_name

    sent = QueuedMessage("1", ([],), {}, task="sfsync.email.sent")
    reply = QueuedMessage("2", ([],), {}, task="sfsync.email.reply")
    assert batch_name([sent, sent], "sfsync.contact.updated") == "sfsync.email.sent"
    assert batch_name([sent, reply], "x") == "sfsync.email.reply+sfsync.email.sent"
    assert batch_name([], "sfsync.email.sent") == "sfsync.email.sent"


def test_given_a_flood_with_a_backlog_when_its_full_batch_read_off_the_queue_waits_then_the_others_go_first():
    # a flood's full batch read as it comes is its backlog too: it yields like the flood's drains
    import time

    buffer, pool, _ = buffer_with_one_pool_slot()
    send(buffer, "ws_b", 1)
    buffer.flush("ws_b")  # takes the only pool slot
    buffer.overflowing, buffer.overflow_sizes = {"ws_flood": time.monotonic()}, {"ws_flood": 5_000}
    send(buffer, "ws_flood", 200)  # a whole bucket: it goes at once and waits for the slot
    send(buffer, "ws_c", 1)
    buffer.flush("ws_c")

    pool.finish_first()

    assert [len(batch) for batch, _ in pool.running] == [1]
    pool.finish_first()
    assert [len(batch) for batch, _ in pool.running] == [200]

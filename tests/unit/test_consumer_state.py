"""One consumer start's state with fakes for kombu's messages, the pool and the overflow: the policy carried out."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

from workers.consumer.dispatch import PoolShare
from workers.consumer.policy import BatchKind
from workers.consumer.state import ConsumerSetup, ConsumerState

_tags = itertools.count()


class FakeMessage:
    def __init__(self, workspace: str, header: bool = True):
        self.delivery_tag = f"tag-{next(_tags)}"
        self.headers = {"id": self.delivery_tag, **({"sfsync_workspace": workspace} if header else {})}
        self.delivery_info = {"routing_key": "email.sent"}
        self.body = json.dumps([[{"workspace_id": workspace}], {}, {}]).encode()
        self.content_type, self.content_encoding = "application/json", "utf-8"
        self.acked = self.rejected = False

    def decode(self):
        return json.loads(self.body)

    def ack(self):
        if self.fails:
            raise ConnectionError("Connection closed by server.")
        self.acked = True

    def reject(self, requeue=False):
        if self.fails:
            raise ConnectionError("Connection closed by server.")
        self.rejected = requeue

    fails = False


class FakeJob:
    """billiard's ApplyResult as far as sfsync reads it: in its pool's cache until its callbacks ran."""

    def __init__(self, cache: dict, number: int):
        self._cache, self._job, self.accepted = cache, number, False
        cache[number] = self

    def ready(self) -> bool:
        return False


class FakePool:
    """A pool that takes batches and finishes them only when told."""

    def __init__(self, processes: int = 1):
        self.num_processes = processes
        self.running: list[tuple[list, object, object]] = []
        #: per batch handed over, the workspace whose overflow it drains (None: none)
        self.drains: list[str | None] = []
        self._cache: dict[int, FakeJob] = {}
        self.jobs: list[FakeJob] = []

    def apply_async(self, _fn, args, callback=None, error_callback=None, **_kwargs):
        self.running.append((args[1], callback, error_callback))
        self.drains.append(args[2])
        self.jobs.append(FakeJob(self._cache, len(self.jobs)))
        return self.jobs[-1]

    def flush(self):
        """As Celery's AsynPool.flush when the broker connection is lost: jobs not accepted are forgotten."""
        for number, job in list(self._cache.items()):
            if not job.accepted:
                del self._cache[number]

    def finish_first(self, result=None):
        messages, callback, _ = self.running.pop(0)
        callback(len(messages) if result is None else result)

    def kill_first(self):
        _, _, error_callback = self.running.pop(0)
        error_callback(RuntimeError("the process died"))

    def sizes(self) -> list[int]:
        return [len(messages) for messages, _, _ in self.running]


class FakeOverflow:
    """An overflow store holding only sizes (what the consumer reads of it)."""

    def __init__(self, pending: dict[str, int] | None = None):
        self.waiting = dict(pending or {})
        self.spilled: list[tuple[str, str]] = []

    def workspaces(self):
        return list(self.waiting)

    def pending(self, workspaces):
        return {ws: self.waiting[ws] for ws in workspaces if self.waiting.get(ws)}

    def depth(self, _queue):
        return 0

    def sieve(self, _queue, workspaces, _scan):
        return {ws: 0 for ws in workspaces}, 0

    @staticmethod
    def entry(*args, **kwargs):
        return json.dumps([args, kwargs])

    def spill(self, entries):
        self.spilled.extend(entries)
        for ws, _ in entries:
            self.waiting[ws] = self.waiting.get(ws, 0) + 1


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


SENT = SimpleNamespace(flush_every=200, flush_interval=1.0, name="sfsync.email.sent", queue="email.sent")
REPLIED = SimpleNamespace(flush_every=200, flush_interval=1.0, name="sfsync.email.replied", queue="email.replied")


def consumer(processes: int = 1, connection=None) -> SimpleNamespace:
    return SimpleNamespace(pool=FakePool(processes), qos=SimpleNamespace(value=10_000), event_dispatcher=None,
                           connection=connection if connection is not None else object(),
                           timer=SimpleNamespace(call_repeatedly=lambda *_: SimpleNamespace(cancel=lambda: None)))


def state_of(processes: int = 1, linger: float = 1_000.0, overflow: FakeOverflow | None = None):
    c, clock = consumer(processes), Clock()
    setup = ConsumerSetup(lingers=lambda _ws: linger, overflow=(lambda: overflow) if overflow is not None else None,
                          clock=clock)
    return ConsumerState(SENT, c, setup, PoolShare.of(c)), c.pool, clock


def send(state: ConsumerState, workspace: str, n: int, task=SENT, header: bool = True) -> list[FakeMessage]:
    receive = state.receiver(task)
    messages = [FakeMessage(workspace, header) for _ in range(n)]
    for message in messages:
        receive(message, None, None, None, None)
    return messages


def test_given_a_busy_pool_when_a_workspace_flushes_twice_then_its_second_bucket_joins_the_waiting_batch():
    state, pool, clock = state_of()
    send(state, "ws_a", 1)
    state.flush("ws_a", clock())  # takes the only pool slot
    first = send(state, "ws_b", 2)
    state.flush("ws_b", clock())
    second = send(state, "ws_b", 3)
    state.flush("ws_b", clock())

    pool.finish_first()

    assert pool.sizes() == [5]
    pool.finish_first()
    assert all(m.acked for m in first + second)
    assert len(state.holdings) == 0 and state.buffer.held == {}


def test_given_a_waiting_batch_that_is_full_when_more_comes_then_a_new_batch_is_made():
    state, pool, clock = state_of()
    send(state, "ws_a", 1)
    state.flush("ws_a", clock())
    send(state, "ws_b", 150)
    state.flush("ws_b", clock())
    send(state, "ws_b", 120)
    state.flush("ws_b", clock())

    pool.finish_first()
    pool.finish_first()

    assert pool.sizes() == [70]


def test_given_a_batch_already_running_when_the_workspace_flushes_again_then_nothing_joins_it():
    state, pool, clock = state_of()
    send(state, "ws_b", 2)
    state.flush("ws_b", clock())
    send(state, "ws_b", 3)
    state.flush("ws_b", clock())

    pool.finish_first()

    assert pool.sizes() == [3]


def test_given_a_batch_whose_process_died_when_it_ends_then_its_messages_go_back_to_the_queue():
    state, pool, clock = state_of()
    held = send(state, "ws_a", 3)
    state.flush("ws_a", clock())

    pool.kill_first()

    assert all(m.rejected and not m.acked for m in held)
    assert len(state.holdings) == 0 and state.slots.in_flight == 0


def test_given_joined_batches_waiting_when_the_state_stops_then_every_held_lease_is_let_go():
    state, _, clock = state_of()
    send(state, "ws_a", 1)
    state.flush("ws_a", clock())
    send(state, "ws_b", 2)
    state.flush("ws_b", clock())
    waiting = send(state, "ws_b", 3)
    state.flush("ws_b", clock())
    bucketed = send(state, "ws_c", 2)

    state.stop()

    assert not {m.delivery_tag for m in waiting + bucketed} & state.holdings.tags
    assert state.buffer.open == {} and state.turns.count == 0


def test_given_a_workspace_sending_on_two_queues_when_its_bucket_goes_then_one_batch_carries_both():
    # an email sent and a reply of one workspace: one contact lookup and one write for both
    state, pool, clock = state_of()
    state.add(REPLIED)
    send(state, "ws_a", 2, SENT)
    send(state, "ws_a", 1, REPLIED)

    state.flush("ws_a", clock())

    [(batch, _, _)] = pool.running
    assert [(q.task, q.queue) for q in batch] == [("sfsync.email.sent", "email.sent")] * 2 + [
        ("sfsync.email.replied", "email.replied")]


def test_given_messages_with_and_without_the_workspace_header_when_bucketed_then_both_find_their_workspace():
    state, _, _ = state_of()
    send(state, "ws_a", 2, header=True)
    send(state, "ws_a", 1, header=False)  # an older emitter's: read from the parsed body

    assert state.buffer.buckets["ws_a"].size == 3
    assert [h.queued.headers for h in state.buffer.buckets["ws_a"].items] == [
        {"sfsync_workspace": "ws_a"}, {"sfsync_workspace": "ws_a"}, {}]


def test_given_a_workspace_with_an_overflow_when_its_bucket_goes_then_the_batch_drains_it_too():
    state, pool, clock = state_of(overflow=FakeOverflow({"ws_a": 3}))
    state.tick()  # 3 entries, younger than the linger: no drain of its own yet
    assert pool.running == []
    send(state, "ws_a", 2)

    state.flush("ws_a", clock())

    assert pool.sizes() == [2] and pool.drains == ["ws_a"]


def test_given_an_overflow_that_waited_its_linger_when_its_drain_waits_then_the_bucket_joins_it():
    state, pool, clock = state_of(linger=0.0, overflow=FakeOverflow({"ws_a": 3}))
    send(state, "ws_b", 1)
    state.flush("ws_b", clock())  # takes the only pool slot
    state.tick()  # ws_a's drain waits for the slot
    send(state, "ws_a", 2)
    state.flush("ws_a", clock())

    pool.finish_first()

    assert pool.sizes() == [2] and pool.drains[-1] == "ws_a"


def test_given_a_consumer_start_when_every_batch_task_asks_for_its_strategy_then_they_share_one_state():
    from workers.consumer.task import BatchTask

    app = SimpleNamespace()
    first = consumer()
    BatchTask.Strategy(SENT, SENT, app, first)
    BatchTask.Strategy(REPLIED, REPLIED, app, first)
    state = getattr(first, ConsumerState.ATTRIBUTE)
    assert state.queues() == ["email.replied", "email.sent"]

    held = send(state, "ws_a", 2)
    first.connection = object()  # the broker connection was lost and made anew
    BatchTask.Strategy(SENT, SENT, app, first)

    again = getattr(first, ConsumerState.ATTRIBUTE)
    assert again is not state and again.queues() == ["email.sent"] and state.stopped
    assert again.holdings is state.holdings and again.slots is state.slots  # the pool's share outlives a start
    assert state.buffer.buckets == {} and not {m.delivery_tag for m in held} & state.holdings.tags


def test_given_a_batch_in_flight_when_the_consumer_restarts_then_its_end_frees_the_process_for_the_new_start():
    from workers.consumer.task import BatchTask

    app, c = SimpleNamespace(), consumer()
    BatchTask.Strategy(SENT, SENT, app, c)
    old = getattr(c, ConsumerState.ATTRIBUTE)
    running = send(old, "ws_a", 1)
    old.flush("ws_a", old.clock())
    c.connection = object()
    BatchTask.Strategy(SENT, SENT, app, c)
    new = getattr(c, ConsumerState.ATTRIBUTE)
    send(new, "ws_b", 1)
    new.flush("ws_b", new.clock())
    assert c.pool.sizes() == [1]  # the only process is still taken by the old start's batch

    c.pool.finish_first()

    assert c.pool.sizes() == [1] and running[0].acked


def test_given_a_quiet_workspaces_small_overflow_when_drained_then_it_takes_its_turn_like_a_batch():
    state, pool, clock = state_of(linger=0.0, overflow=FakeOverflow({"ws_quiet": 3, "ws_flood": 5_000}))
    send(state, "ws_b", 1)
    state.flush("ws_b", clock())  # takes the only pool slot
    state.tick()  # both drains wait for the slot
    send(state, "ws_c", 1)
    state.flush("ws_c", clock())

    for _ in range(3):
        pool.finish_first()

    # the quiet workspace's drain went in its turn; the flood's let ws_c's batch go first
    assert pool.drains == [None, "ws_quiet", None, "ws_flood"]


def test_given_a_flood_with_a_backlog_when_its_full_batch_read_off_the_queue_waits_then_the_others_go_first():
    # a flood's full batch read as it comes is its backlog too: it yields like the flood's drains
    state, pool, clock = state_of(overflow=FakeOverflow({"ws_flood": 5_000}))
    send(state, "ws_b", 1)
    state.flush("ws_b", clock())  # takes the only pool slot
    state.drains.refresh(clock())
    send(state, "ws_flood", 200)  # a whole bucket: it goes at once and waits for the slot
    send(state, "ws_c", 1)
    state.flush("ws_c", clock())
    assert [b.kind for b in state.turns.heads()] == [BatchKind.BACKLOG, BatchKind.FRESH]

    pool.finish_first()

    assert pool.sizes() == [1]
    pool.finish_first()
    assert pool.sizes() == [200]


def test_given_a_full_batch_of_a_workspace_waiting_when_its_overflow_is_due_then_it_gets_a_drain_of_its_own():
    # a full batch has no room to take the overflow along: waiting for it would strand the overflow
    state, pool, clock = state_of(linger=0.0, overflow=FakeOverflow({"ws_a": 3}))
    send(state, "ws_b", 1)
    state.flush("ws_b", clock())  # takes the only pool slot
    send(state, "ws_a", 200)  # a whole bucket: it goes at once and waits for the slot
    state.tick()

    pool.finish_first()
    pool.finish_first()

    assert pool.sizes() == [0] and pool.drains[-1] == "ws_a"


def test_given_a_drain_that_brought_a_whole_batch_back_when_it_ends_then_the_next_drain_follows_at_once():
    state, pool, clock = state_of(overflow=FakeOverflow({"ws_flood": 5_000}))
    state.tick()
    assert pool.sizes() == [0]  # a whole batch waits in the overflow: a drain at once

    pool.finish_first(result=200)

    assert pool.sizes() == [0] and pool.drains == ["ws_flood", "ws_flood"]


def test_given_a_flood_when_the_consumer_nears_its_limit_then_its_messages_are_spilled_and_acknowledged():
    overflow = FakeOverflow()
    state, pool, _ = state_of(processes=2, overflow=overflow)
    state.consumer.qos.value = 1_000  # the limit is 900: a workspace holding two batches spills from 450 held
    send(state, "ws_quiet", 1)
    flood = send(state, "ws_flood", 600)

    # two whole batches went to the pool; the 449th message found 450 held in all and was spilled
    assert pool.sizes() == [200, 200]
    assert not any(m.acked for m in flood[:448]) and "ws_flood" in state.floods.spilled
    assert all(m.acked for m in flood[448:548])  # a chunk of 100 is written at once
    state.tick()  # the rest at the next tick

    assert all(m.acked for m in flood[448:]) and len(overflow.spilled) == 152
    assert set(state.drains.overflows) == {"ws_flood"}


def test_given_a_batch_no_process_accepted_when_the_pool_forgets_it_then_its_process_and_messages_are_given_back():
    # Celery flushes the pool when the broker connection is lost: jobs not yet accepted are forgotten
    # and neither callback runs; without the sweep the slot would stay taken for the worker's life
    state, pool, clock = state_of()
    forgotten = send(state, "ws_a", 3)
    state.flush("ws_a", clock())
    waiting = send(state, "ws_b", 2)
    state.flush("ws_b", clock())
    assert pool.sizes() == [3] and state.slots.in_flight == 1

    pool.flush()
    state.tick()

    assert all(m.rejected and not m.acked for m in forgotten)
    assert not {m.delivery_tag for m in forgotten} & state.holdings.tags
    assert pool.sizes() == [3, 2] and state.slots.in_flight == 1  # the waiting batch took the process
    assert {m.delivery_tag for m in waiting} <= state.holdings.tags

    pool.finish_first()  # a callback arriving after all changes nothing
    assert not any(m.acked for m in forgotten) and state.slots.in_flight == 1


def test_given_a_batch_a_process_accepted_when_the_pool_is_flushed_then_it_keeps_running():
    state, pool, clock = state_of()
    running = send(state, "ws_a", 3)
    state.flush("ws_a", clock())
    pool.jobs[0].accepted = True

    pool.flush()
    state.tick()
    pool.finish_first()

    assert all(m.acked and not m.rejected for m in running)
    assert state.slots.in_flight == 0 and len(state.holdings) == 0 and len(state.share.jobs) == 0


def test_given_acknowledgements_that_fail_when_a_batch_ends_then_the_rest_are_acked_and_no_lease_is_kept():
    state, pool, clock = state_of()
    messages = send(state, "ws_a", 4)
    messages[1].fails = True
    state.flush("ws_a", clock())

    pool.finish_first()

    assert [m.acked for m in messages] == [True, False, True, True]
    assert len(state.holdings) == 0 and state.slots.in_flight == 0


def test_given_hand_backs_that_fail_when_a_process_dies_then_no_lease_is_kept_for_ever():
    state, pool, clock = state_of()
    messages = send(state, "ws_a", 3)
    for message in messages:
        message.fails = True  # Redis unreachable: they come back after the visibility timeout
    state.flush("ws_a", clock())

    pool.kill_first()

    assert len(state.holdings) == 0 and state.slots.in_flight == 0 and len(state.share.jobs) == 0


def test_given_a_state_stopped_at_a_lost_connection_when_the_consumer_starts_again_then_a_new_state_takes_over():
    from workers.consumer.task import BatchTask

    app = SimpleNamespace()
    c = consumer()
    BatchTask.Strategy(SENT, SENT, app, c)
    stopped = getattr(c, ConsumerState.ATTRIBUTE)
    stopped.stop()  # SfsyncConsumer.on_close, before Celery reconnects

    BatchTask.Strategy(SENT, SENT, app, c)  # even were the connection object the same

    again = getattr(c, ConsumerState.ATTRIBUTE)
    assert again is not stopped and not again.stopped

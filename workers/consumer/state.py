"""One consumer start's state: every message read goes through it, and every tick it asks the policy what to do.

Celery starts the consumer anew after a lost broker connection; the messages it held then
belong to the lost connection (Redis hands them out again once their leases stop being renewed),
so each start gets a fresh `ConsumerState`. What outlives a start — batches in flight and their
pool processes, the leases of their messages — is the consumer's `PoolShare`.

The state keeps the facts (the buffer, floods, the sieve's last look, the overflows, the turns)
and carries out what the policy (workers/consumer/policy.py) decides from a `Snapshot` of them;
it decides nothing itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from events.wire import sfsync_headers_of, workspace_of
from workers.consumer.batches import Batch, Held, QueuedMessage, events_carried, packable, signed_parts
from workers.consumer.buffer import Buffer
from workers.consumer.dispatch import Handoff, PoolShare, Turns
from workers.consumer.drains import DRAIN_CHECK, Drains
from workers.consumer.floods import Floods
from workers.consumer.policy import Admission, FairShare, Snapshot, Tunables
from workers.consumer.sieve import SIEVE_EVERY, Sieve

log = logging.getLogger("sfsync.worker")

#: seconds between ticks: buckets and overflows due, the sieve, drains
FLUSH_TICK = 0.1


@dataclass(frozen=True)
class ConsumerSetup:
    """How a worker's consumer is set up (`register` in workers/tasks.py sets the app's; without
    one: no overflow, every workspace's linger the batch task's flush interval)."""

    #: seconds a workspace's events may wait for company (None: the batch task's flush interval)
    lingers: Callable[[str], float] | None = None
    #: makes the consumer's overflow store (None: nothing is spilled, sieved or drained)
    overflow: Callable[[], Any] | None = None
    #: seconds running batches get at shutdown before their processes are stopped (None: no limit)
    shutdown_grace: float | None = None
    #: the consumer's clock (monotonic seconds)
    clock: Callable[[], float] = field(default=time.monotonic)
    #: the fair-share policy's numbers (the batch size is always the batch task's)
    tunables: Tunables = field(default_factory=Tunables)

    ATTRIBUTE = "sfsync_consumer_setup"

    @classmethod
    def of(cls, app: Any) -> "ConsumerSetup":
        return getattr(app, cls.ATTRIBUTE, None) or cls()


class ConsumerState:
    """Everything one consumer start knows about its batch tasks' messages (see the module docstring)."""

    ATTRIBUTE = "_sfsync_consumer_state"

    def __init__(self, task: Any, consumer: Any, setup: ConsumerSetup, share: PoolShare):
        #: the batch tasks whose messages this consumer takes, by name (the first one runs the batches)
        self.tasks: dict[str, Any] = {task.name: task}
        self.task = task
        self.consumer = consumer
        self.connection = getattr(consumer, "connection", None)
        self.clock = setup.clock
        self.policy = FairShare(replace(setup.tunables, batch_size=task.flush_every))
        self.lingers = setup.lingers or (lambda _ws: task.flush_interval)
        self.store = setup.overflow() if setup.overflow is not None else None
        self.share = share
        self.holdings = share.holdings
        self.slots = share.slots
        self.buffer = Buffer(task.flush_every, self.lingers)
        self.floods = Floods(self.store, self.holdings)
        self.sieve = Sieve(self.store)
        self.drains = Drains(self.store, self.lingers)
        self.turns = Turns()
        self.handoff = Handoff(consumer.pool, self.holdings, task.name, getattr(consumer, "event_dispatcher", None),
                               share.jobs)
        self.stopped = False
        #: when the queues were last sieved and the overflows last read
        self.sieved = self.drains_checked = float("-inf")
        self.slots.on_free = self.pump
        self.timer = consumer.timer.call_repeatedly(min(task.flush_interval, FLUSH_TICK), self.tick)

    @classmethod
    def for_start(cls, task: Any, app: Any, consumer: Any) -> "ConsumerState":
        """The state of the consumer's current start: Celery asks every batch task for its strategy
        at every start (reconnections included); the first of a start makes the state, the others join it."""
        current: ConsumerState | None = getattr(consumer, cls.ATTRIBUTE, None)
        connection = getattr(consumer, "connection", None)
        if current is not None:
            # a state stopped when its connection was lost (SfsyncConsumer.on_close) is never reused
            if connection is not None and current.connection is connection and not current.stopped:
                current.add(task)
                return current
            current.stop()
        setup = ConsumerSetup.of(app)
        state = cls(task, consumer, setup, PoolShare.of(consumer, setup.shutdown_grace))
        setattr(consumer, cls.ATTRIBUTE, state)
        return state

    def add(self, task: Any) -> None:
        """Take `task`'s messages too."""
        self.tasks[task.name] = task

    def queues(self) -> list[str]:
        return sorted({t.queue for t in self.tasks.values()})

    def receiver(self, task: Any) -> Callable[..., None]:
        """The strategy Celery calls with each message for `task`."""
        def on_message(message, body, ack, reject, callbacks, **kwargs) -> None:
            self.on_message(task, message, kwargs.get("sfsync_shape_checked", False))
        return on_message

    def snapshot(self) -> Snapshot:
        qos = getattr(self.consumer, "qos", None)
        return Snapshot(
            processes=self.slots.processes, prefetch=int(getattr(qos, "value", 0) or 0), held=len(self.holdings),
            held_by_workspace=self.buffer.held, buckets=self.buffer.buckets, turns=self.turns.heads(),
            waiting=self.turns.count, open_batches=self.buffer.open, in_flight=self.slots.in_flight,
            backlog_in_flight=self.slots.backlog_in_flight, overflows=self.drains.overflows,
            spilled=self.floods.spilled, seen=self.floods.seen, queued=self.sieve.queued,
            overflow=self.store is not None)

    # --- messages ---------------------------------------------------------------------------

    def on_message(self, task: Any, message: Any, shape_checked: bool = False) -> None:
        args, kwargs, _ = message.decode()
        packed = packable(message)  # held as the bytes it came in (see QueuedMessage)
        queued = QueuedMessage(message.headers.get("id"), () if packed is not None else tuple(args), dict(kwargs),
                               dict(message.delivery_info or {}), task.name, task.queue,
                               sfsync_headers_of(message.headers), **signed_parts(message.headers, message.body),
                               shape_checked=shape_checked, packed=packed, events=events_carried(args))
        workspace = workspace_of(message.headers, args)
        now = self.clock()
        self.floods.saw(workspace, now)
        self.holdings.add(message.delivery_tag)
        held = Held(message, queued)
        if self.policy.admit(self.snapshot(), workspace, now) is Admission.SPILL:
            self.floods.spilling(workspace)
            if self.floods.set_aside(workspace, held):
                self.spill(now)
            return
        self.buffer.add(workspace, held, now)
        for ws in self.policy.flush_on_arrival(self.snapshot(), workspace):
            self.flush(ws, now)

    def spill(self, now: float) -> None:
        spilled, refused = self.floods.spill()
        for ws in spilled:
            self.drains.noticed(ws, now)
        for ws, held in refused:
            self.buffer.add(ws, held, now)

    def flush(self, workspace: str, now: float) -> None:
        """Send the workspace's bucket to the pool, joining its batch still waiting, a batch at a time."""
        snapshot = self.snapshot()
        for batch in self.buffer.flush(workspace, lambda n: self.policy.kind(snapshot, workspace, n), now):
            self.submit(batch)

    def submit_drain(self, workspace: str, now: float) -> None:
        """Queue a drain of the workspace's overflow (a batch of no messages; what the workspace
        sends meanwhile joins it)."""
        self.drains.drained(workspace, now)
        batch = Batch(workspace, self.policy.drain_kind(self.snapshot(), workspace), now, self.task.flush_every)
        self.buffer.opened(batch)
        self.submit(batch)

    # --- every tick ---------------------------------------------------------------------------

    def tick(self) -> None:
        self.share.jobs.sweep()  # batches the pool forgot give their process back first
        now = self.clock()
        self.spill(now)
        self.floods.forget_quiet(now, self.policy.t.active_window)
        for workspace in self.policy.due(self.snapshot(), now):
            self.flush(workspace, now)
        if self.store is not None and now - self.sieved >= SIEVE_EVERY:
            self.sieved = now
            targets = self.policy.sieve_targets(self.snapshot(), now)
            for workspace in self.sieve.sweep(self.queues(), targets):
                # its next messages follow the moved ones into the overflow, in order; the moved
                # ones wait for company from now, as if they had been read
                self.floods.spilled.add(workspace)
                self.drains.noticed(workspace, now)
        if self.store is not None and now - self.drains_checked >= DRAIN_CHECK:
            self.drains_checked = now
            if self.drains.refresh(now):
                self.floods.keep_only(set(self.drains.overflows))
        for workspace in self.policy.drains_due(self.snapshot(), now):
            self.submit_drain(workspace, now)
        self.pump()  # a reserve for the others' batches may have ended

    # --- the pool -----------------------------------------------------------------------------

    def submit(self, batch: Batch) -> None:
        self.turns.add(batch)
        self.pump()

    def pump(self) -> None:
        """Start waiting batches while the policy says one may start."""
        while not self.stopped:
            index = self.policy.next_start(self.snapshot(), self.clock())
            if index is None:
                return
            self.start(self.turns.take(index))

    def start(self, batch: Batch) -> None:
        """The batch's turn came: nothing joins it from now on; it drains its workspace's overflow
        too when the policy says so."""
        self.buffer.started(batch)
        drains = self.policy.drains_along(self.snapshot(), batch.workspace, batch.size)
        self.slots.take(batch.kind)

        def ended(result: int | None) -> None:
            self.slots.free(batch.kind)
            self.buffer.release(batch.workspace, batch.size)
            if result is not None and not self.stopped and \
                    self.policy.drain_again(self.snapshot(), batch.workspace, drains, result):
                self.submit_drain(batch.workspace, self.clock())

        self.handoff.start(batch, batch.workspace if drains else None, ended)

    def stop(self) -> None:
        """This start is over: messages never dispatched belong to the lost connection (Redis hands
        them out again once their leases stop being renewed)."""
        self.stopped = True
        self.timer.cancel()
        if self.slots.on_free == self.pump:
            self.slots.on_free = None
        self.holdings.let_go(held.message for held in self.buffer.clear() + self.turns.clear() + self.floods.clear())
        self.drains.clear()

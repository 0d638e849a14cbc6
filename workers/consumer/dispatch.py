"""Dispatch: batches waiting their turn, the pool's processes they take, and the hand-off to a pool process.

One batch per pool process is in flight; the rest wait in the consumer (`Turns`), where what
their workspace sends meanwhile can still join them. Which waiting batch starts next is the
policy's call (FairShare.next_start); this module keeps the rotation, counts the processes taken
(`PoolSlots`, which outlive a consumer restart: a batch in flight keeps its process), and hands a
batch to the pool with callbacks that acknowledge its messages when it ends, or hand them back to
the queue at once when its process died or the pool dropped it (`Jobs`).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import current_app, signals

from workers.broker_guard import acks_together
from workers.consumer.batches import Batch, Held, QueuedMessage, batch_name
from workers.consumer.leases import Holdings, each_message
from workers.consumer.policy import BatchKind
from workers.observability import metrics

log = logging.getLogger("sfsync.worker")


def run_batch(task_name: str, messages: list[QueuedMessage], drain: str | None = None) -> int:
    """In a pool process: sync one workspace's batch, its messages of every event queue together,
    and a chunk of the workspace's overflow when `drain` names it (see events/overflow.py); the
    task's body never raises (see EventBatchTask.run_batch)."""
    with collected_after_the_batch():
        return current_app.tasks[task_name].run_batch(messages, drain)  # type: ignore[attr-defined]  # a BatchTask


@contextmanager
def collected_after_the_batch() -> Iterator[None]:
    """No automatic garbage collection while a batch runs; one pass over the youngest objects once it ends.

    A batch's objects (its events, their models, records and replies: tens of thousands) live until
    the batch ends, when reference counting frees them; the collector's automatic passes in between
    walked them again and again, for nothing (each pass of the younger generations also walks
    everything that survived the passes before it). Garbage in reference cycles made during a batch
    waits for its end: a batch holds at most a few hundred events. Where collection is already
    off (someone turned it off), it stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)


class Dropped(Exception):
    """The pool forgot a batch no process had accepted yet (see Jobs)."""


def forgotten(job: Any) -> bool:
    """Whether the pool forgot `job` without running its callbacks.

    billiard's ApplyResult stays in its pool's cache (`_cache`, keyed by `_job`) until it is ready
    and its callbacks have run; one that is not ready and no longer in the cache was discarded.
    """
    cache = getattr(job, "_cache", None)
    return cache is not None and not job.ready() and getattr(job, "_job", None) not in cache


class Jobs:
    """Batches handed to the pool whose callbacks have not run yet, each with what to do if the pool forgets it.

    When the consumer loses its broker connection, Celery flushes the prefork pool before it
    reconnects (Consumer.on_close calls AsynPool.flush): every job no process has accepted yet is
    taken out of the pool's cache, and neither of its callbacks ever runs. A batch handed over in
    that moment would keep its process slot taken and its messages' leases renewed for the rest of
    the worker's life. `sweep` finds such batches and fails them: the slot is given back and the
    messages are handed back to their queues (or, when Redis cannot be reached, left to come back
    after the visibility timeout, their leases no longer renewed). A process that had already read
    the batch from its pipe still syncs it; the ledger keeps its events from being written twice.
    """

    def __init__(self) -> None:
        self.running: dict[str, tuple[Any, Callable[[BaseException], None]]] = {}

    def __len__(self) -> int:
        return len(self.running)

    def track(self, batch_id: str, job: Any, lost: Callable[[BaseException], None]) -> None:
        self.running[batch_id] = (job, lost)

    def untrack(self, batch_id: str) -> None:
        self.running.pop(batch_id, None)

    def sweep(self) -> int:
        """Fail the batches the pool forgot; returns how many."""
        gone = [(batch_id, lost) for batch_id, (job, lost) in self.running.items() if forgotten(job)]
        for batch_id, lost in gone:
            self.running.pop(batch_id, None)
            lost(Dropped("dropped by the pool before a process accepted it"))
        return len(gone)


class PoolSlots:
    """Batches in flight in the pool (of BACKLOG kind among them); one per process at most."""

    def __init__(self, processes: int):
        self.processes = max(processes, 1)
        self.in_flight = 0
        self.backlog_in_flight = 0
        #: called when a process frees up (the current consumer start pumps its waiting batches)
        self.on_free: Callable[[], None] | None = None

    def take(self, kind: BatchKind) -> None:
        self.in_flight += 1
        self.backlog_in_flight += kind is BatchKind.BACKLOG

    def free(self, kind: BatchKind) -> None:
        self.in_flight -= 1
        self.backlog_in_flight -= kind is BatchKind.BACKLOG
        if self.on_free is not None:
            self.on_free()


class Turns:
    """Batches waiting for a pool process, per workspace in order, the workspaces in rotation."""

    def __init__(self) -> None:
        self.ready: dict[str, deque[Batch]] = {}
        self.order: deque[str] = deque()
        self.count = 0

    def add(self, batch: Batch) -> None:
        queue = self.ready.get(batch.workspace)
        if not queue:
            queue = self.ready[batch.workspace] = deque()
            self.order.append(batch.workspace)
        queue.append(batch)
        self.count += 1

    def heads(self) -> Sequence[Batch]:
        """Each workspace's first waiting batch, in turn order (a live view)."""
        return _Heads(self)

    def take(self, index: int) -> Batch:
        """Start the first batch of the workspace at `index` in turn; it goes to the end of the
        rotation if it has more waiting."""
        workspace = self.order[index]
        del self.order[index]
        queue = self.ready[workspace]
        batch = queue.popleft()
        if queue:
            self.order.append(workspace)
        else:
            del self.ready[workspace]
        self.count -= 1
        return batch

    def clear(self) -> list[Held]:
        """Forget the batches not yet started; returns the messages they held."""
        dropped = [held for queue in self.ready.values() for batch in queue for held in batch.items]
        self.ready.clear()
        self.order.clear()
        self.count = 0
        return dropped


class _Heads(Sequence):
    def __init__(self, turns: Turns):
        self.turns = turns

    def __len__(self) -> int:
        return len(self.turns.order)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.turns.ready[ws][0] for ws in list(self.turns.order)[index]]
        return self.turns.ready[self.turns.order[index]][0]

    def __iter__(self) -> Iterator[Batch]:
        return (self.turns.ready[ws][0] for ws in self.turns.order)


class Handoff:
    """Hands batches to the pool; with task events on (`sfsync worker -E`) each batch shows in
    Flower as one task run (ids and counts only: the events' content never goes to the event stream)."""

    def __init__(self, pool: Any, holdings: Holdings, task_name: str, events: Any = None, jobs: Jobs | None = None):
        self.pool = pool
        self.holdings = holdings
        self.jobs = jobs if jobs is not None else Jobs()
        self.task_name = task_name
        self.events = events if getattr(events, "enabled", False) else None

    def _event(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            try:
                self.events.send(kind, **fields)
            except Exception:  # monitoring must never cost a batch
                log.debug("could not send a %s event", kind, exc_info=True)

    def start(self, batch: Batch, drain: str | None, ended: Callable[[int | None], None]) -> None:
        """Run the batch in a pool process; `ended(result)` once it is over (None: its process died).
        Its messages are acknowledged after `ended` when it succeeded, else rejected back to their queues."""
        messages, queued = [held.message for held in batch.items], batch.queued()
        batch_id, started = uuid.uuid4().hex, time.monotonic()
        self._event("task-received", uuid=batch_id, name=batch_name(queued, self.task_name),
                    args=f"({len(messages)} messages{', draining ' + drain if drain else ''})",
                    kwargs="{}", root_id=batch_id, parent_id=None, retries=0, eta=None, expires=None)

        def accepted(pid: int, _time_accepted: float) -> None:
            self._event("task-started", uuid=batch_id, pid=pid)

        over = False

        def finish() -> bool:
            """The first of done, failed and the pool's loss of the batch counts; the others are ignored."""
            nonlocal over
            if over:
                return False
            over = True
            self.jobs.untrack(batch_id)
            self.holdings.let_go(messages)
            return True

        def done(result: Any) -> None:
            if not finish():
                return
            try:
                ended(result if isinstance(result, int) else 0)
            finally:
                with acks_together(messages):
                    each_message(messages, lambda message: message.ack(), "acknowledge")
            self._event("task-succeeded", uuid=batch_id, result=repr(result), runtime=time.monotonic() - started)

        def failed(exc: Any) -> None:
            if not finish():
                return
            metrics.record_handed_back("dropped_by_pool" if isinstance(exc, Dropped) else "process_lost")
            if isinstance(exc, Dropped):
                log.warning("batch of %d message(s) of %s was dropped by the pool before a process accepted it "
                            "(the broker connection was lost); they go back on their queues",
                            len(messages), batch.workspace)
            else:  # the pool process died (or was stopped at shutdown): hand the batch back at once
                log.error("batch of %d message(s) of %s lost its process (%r); they go back on their queues",
                          len(messages), batch.workspace, exc)
            try:
                ended(None)
            finally:
                each_message(messages, lambda message: message.reject(requeue=True), "hand back")
                self._event("task-failed", uuid=batch_id, exception=repr(exc)[:200], traceback="")

        try:
            job = self.pool.apply_async(run_batch, args=(self.task_name, queued, drain),
                                        accept_callback=accepted, callback=done, error_callback=failed)
        except Exception as exc:  # noqa: BLE001 - a pool that is shutting down: the messages go back to the queue
            failed(exc)
            return
        if not over:
            self.jobs.track(batch_id, job, failed)


class PoolShare:
    """What outlives a consumer start: the pool's slots, the batches in flight, the leases of the
    messages held, and the shutdown watchdog. One per consumer (a worker process has one), made at its first start."""

    ATTRIBUTE = "_sfsync_pool_share"

    def __init__(self, pool: Any, shutdown_grace: float | None = None):
        self.slots = PoolSlots(int(getattr(pool, "num_processes", 0) or 1))
        self.holdings = Holdings()
        self.jobs = Jobs()
        self.pool = pool
        self.shutdown_grace = shutdown_grace

    @classmethod
    def of(cls, consumer: Any, shutdown_grace: float | None = None) -> "PoolShare":
        share = getattr(consumer, cls.ATTRIBUTE, None)
        if share is None:
            share = cls(consumer.pool, shutdown_grace)
            setattr(consumer, cls.ATTRIBUTE, share)
            if shutdown_grace is not None:
                signals.worker_shutting_down.connect(lambda **_: share.shutting_down(), weak=False,
                                                     dispatch_uid=f"sfsync.shutdown_grace.{id(share)}")
        return share

    def shutting_down(self) -> threading.Thread | None:
        """The worker is stopping: running batches get the grace period, then their processes stop."""
        if self.shutdown_grace is None:
            return None
        return stop_pool_after(self.pool, self.shutdown_grace)


def pool_processes(consumer_pool: Any) -> list[int]:
    """The pids of the pool's processes (billiard's pool keeps them in `_pool._pool`)."""
    return [p.pid for p in getattr(getattr(consumer_pool, "_pool", None), "_pool", []) or []
            if getattr(p, "pid", None)]


def stop_pool_after(consumer_pool: Any, grace: float) -> threading.Thread:
    """At shutdown: give running batches `grace` seconds, then stop their processes.

    Their messages are then rejected back to the queue (see Handoff), so a worker stops within
    the grace period whatever Salesforce does, and another worker writes those events — the
    idempotency ledger keeps a write that was under way from happening twice.
    """
    def watchdog() -> None:
        time.sleep(grace)
        children = pool_processes(consumer_pool)
        if children:
            log.warning("shutdown grace of %.0fs is over: stopping %d pool process(es) still syncing; "
                        "their batches go back on the queue", grace, len(children))
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    thread = threading.Thread(target=watchdog, name="sfsync-shutdown-watchdog", daemon=True)
    thread.start()
    return thread

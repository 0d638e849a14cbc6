"""Batch tasks: messages buffered in the worker's consumer and handed to a pool process as one batch.

sfsync owns this instead of using celery-batches, for three guarantees the worker needs:
- the flush timer is armed again every time the consumer (re)starts: Celery clears its timers
  when the broker connection is lost, and a timer armed only once would leave a worker that
  reconnected after a Redis restart holding messages it never flushes;
- a batch whose pool process dies is handed back to the queue at once (rejected with requeue),
  not left unacknowledged until Redis's visibility timeout;
- the messages a worker holds (buffered or being synced) have their delivery time renewed in
  kombu's `unacked_index` while the worker lives, so the visibility timeout can be short: a
  message of a worker that died comes back to the others within about a minute, and one that
  is merely slow (Salesforce taking its time) is never handed out twice.

sfsync's own retries wait in Redis (see workers/parked.py), never as countdown messages; an ETA
that another client sets on an event message is not honoured: the event is synced when it comes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from celery import Task, current_app

log = logging.getLogger("sfsync.worker")

#: seconds between renewals of the delivery time of the messages a worker holds
LEASE_RENEWAL = 10.0
#: kombu's Redis transport keeps unacked messages' delivery times in this sorted set
UNACKED_INDEX = "unacked_index"


@dataclass
class QueuedMessage:
    """What a pool process needs of one message (picklable): its task id, arguments and routing."""

    id: str | None
    args: tuple
    kwargs: dict
    delivery_info: dict = field(default_factory=dict)


def run_batch(task_name: str, queue: str, messages: list[QueuedMessage]) -> int:
    """In a pool process: sync one batch (the task's body never raises; see BatchTask.run_batch)."""
    return current_app.tasks[task_name].run_batch(queue, messages)


class Holdings:
    """Delivery tags of the messages this worker holds, whose leases the consumer renews."""

    def __init__(self):
        self.tags: set[str] = set()

    def renew(self, client) -> None:
        if not self.tags:
            return
        now = time.time()
        try:
            # XX: renew only what kombu still lists as unacked (an acked tag must not come back)
            client.zadd(UNACKED_INDEX, {tag: now for tag in self.tags}, xx=True)
        except Exception:  # the next renewal tries again; Redis may be restarting
            log.warning("could not renew the leases of %d held messages", len(self.tags), exc_info=True)


class Buffer:
    """One consumer's buffer for one batch task; a new one is made at every consumer (re)start."""

    def __init__(self, task: "BatchTask", consumer: Any, holdings: Holdings):
        self.task = task
        self.pool = consumer.pool
        self.holdings = holdings
        self.pending: list[tuple[Any, QueuedMessage]] = []
        self.timer = consumer.timer.call_repeatedly(task.flush_interval, self.flush)
        # with task events on (`sfsync worker -E`), each batch shows in Flower as one task run
        dispatcher = getattr(consumer, "event_dispatcher", None)
        self.events = dispatcher if getattr(dispatcher, "enabled", False) else None

    def on_message(self, message, body, ack, reject, callbacks, **kwargs) -> None:
        args, kwargs_, _ = message.decode()
        queued = QueuedMessage(message.headers.get("id"), tuple(args), dict(kwargs_),
                               dict(message.delivery_info or {}))
        self.pending.append((message, queued))
        self.holdings.tags.add(message.delivery_tag)
        if len(self.pending) >= self.task.flush_every:
            self.flush()

    def flush(self) -> None:
        while self.pending:
            taken, self.pending = self.pending[:self.task.flush_every], self.pending[self.task.flush_every:]
            self._dispatch(taken)

    def _event(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            try:
                self.events.send(kind, **fields)
            except Exception:  # monitoring must never cost a batch
                log.debug("could not send a %s event", kind, exc_info=True)

    def _dispatch(self, taken: list[tuple[Any, QueuedMessage]]) -> None:
        messages = [m for m, _ in taken]
        batch_id, started = uuid.uuid4().hex, time.monotonic()
        # ids and counts only: the events' content never goes to the event stream
        self._event("task-received", uuid=batch_id, name=self.task.name, args=f"({len(messages)} messages)",
                    kwargs="{}", root_id=batch_id, parent_id=None, retries=0, eta=None, expires=None)

        def accepted(pid: int, _time_accepted: float) -> None:
            self._event("task-started", uuid=batch_id, pid=pid)

        def done(result: Any) -> None:
            for message in messages:
                message.ack_log_error(log, ())
                self.holdings.tags.discard(message.delivery_tag)
            self._event("task-succeeded", uuid=batch_id, result=repr(result), runtime=time.monotonic() - started)

        def failed(exc: Any) -> None:
            self._event("task-failed", uuid=batch_id, exception=repr(exc)[:200], traceback="")
            # the pool process died (or was stopped at shutdown): hand the batch back at once
            log.error("batch of %d on %s lost its process (%r); its messages go back on the queue",
                      len(messages), self.task.queue, exc)
            for message in messages:
                message.reject_log_error(log, (), requeue=True)
                self.holdings.tags.discard(message.delivery_tag)

        self.pool.apply_async(run_batch, args=(self.task.name, self.task.queue, [q for _, q in taken]),
                              accept_callback=accepted, callback=done, error_callback=failed)

    def stop(self) -> None:
        self.timer.cancel()
        # messages never dispatched belong to the lost connection: Redis hands them out again only
        # if their leases stop being renewed
        for message, _ in self.pending:
            self.holdings.tags.discard(message.delivery_tag)
        self.pending = []


class BatchTask(Task):
    """A task run on lists of messages; subclasses set `queue` and implement `run_batch(queue, messages)`."""

    abstract = True
    flush_every = 200
    flush_interval = 1.0
    queue = ""
    _buffer: Buffer | None = None
    holdings = Holdings()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a batch task runs through its consumer buffer")

    def Strategy(self, task: "BatchTask", app: Any, consumer: Any):
        # Celery calls this at every consumer start, reconnections included: the old buffer's
        # messages belong to a lost connection (Redis hands them out again), so start afresh
        if self._buffer is not None:
            self._buffer.stop()
        self._buffer = Buffer(task, consumer, self.holdings)
        return self._buffer.on_message

    def run_batch(self, queue: str, messages: list[QueuedMessage]) -> int:
        raise NotImplementedError


def stop_pool_after(consumer_pool: Any, grace: float) -> threading.Thread:
    """At shutdown: give running batches `grace` seconds, then stop their processes.

    Their messages are then rejected back to the queue (see Buffer), so a worker stops within
    the grace period whatever Salesforce does, and another worker writes those events — the
    idempotency ledger keeps a write that was under way from happening twice.
    """
    def watchdog() -> None:
        time.sleep(grace)
        children = [p.pid for p in getattr(getattr(consumer_pool, "_pool", None), "_pool", []) or []
                    if getattr(p, "pid", None)]
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

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

A backlog of many workspaces is sorted into per-workspace overflows while it lasts (see
`Buffer.sieve`), so each workspace's events are written in full batches, not in the handfuls the
queue's interleaving would give.

sfsync's own retries wait in Redis (see workers/parked.py), never as countdown messages; an ETA
that another client sets on an event message is not honoured: the event is synced when it comes.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Task, current_app

from events.signing import HEADER as SIGNATURE_HEADER
from schemas.workspace import is_workspace_id

log = logging.getLogger("sfsync.worker")

#: seconds between renewals of the delivery time of the messages a worker holds
LEASE_RENEWAL = 10.0
#: seconds between looks for buckets whose linger has passed
FLUSH_TICK = 0.1
#: messages set aside for the overflow are written in chunks of this many (or at the next tick)
SPILL_CHUNK = 100
#: share of the prefetch limit held before a flooding workspace is spilled
SPILL_PRESSURE = 0.5
#: seconds a workspace counts as active after its last message (spilling needs another one active)
ACTIVE_WINDOW = 60.0
#: seconds between looks for overflows to drain
DRAIN_CHECK = 0.5
#: seconds between sweeps of the queue for a flooding workspace's messages, and messages looked at per sweep
SIEVE_EVERY = 0.25
SIEVE_SCAN = 2_000
#: seconds an overflow drain lets other workspaces' batches go first before it takes its turn
DRAIN_PATIENCE = 5.0
#: the dispatcher's kind of a drain job (one waiting per workspace at most)
DRAIN = "drain"
#: while another workspace's batch is due within this many seconds, drains of floods leave one
#: pool process free for it (about the time a drain of a whole batch takes)
RESERVE_AHEAD = 1.0
#: kombu's Redis transport keeps unacked messages' delivery times in this sorted set
UNACKED_INDEX = "unacked_index"


@dataclass
class QueuedMessage:
    """What a pool process needs of one message (picklable): its task id, arguments and routing,
    and the batch task (and its queue) it came for."""

    id: str | None
    args: tuple
    kwargs: dict
    delivery_info: dict = field(default_factory=dict)
    task: str = ""
    queue: str = ""
    #: header sfsync_signature and the body's exact bytes, for a signing workspace's check (events/signing.py)
    signature: str | None = None
    body: bytes | None = None


def signed_parts(headers: Any, body: Any) -> dict[str, Any]:
    """What a signing workspace's check needs of a message: its signature header and, when it has one,
    the body's exact bytes (kept only then: an unsigned message is checked without them)."""
    sent = headers.get(SIGNATURE_HEADER) if isinstance(headers, dict) else None
    if not isinstance(sent, str):
        return {}
    return {"signature": sent, "body": body if isinstance(body, bytes) else str(body).encode("utf-8")}


def run_batch(task_name: str, messages: list[QueuedMessage], drain: str | None = None) -> int:
    """In a pool process: sync one workspace's batch, its messages of every event queue together,
    and a chunk of the workspace's overflow when `drain` names it (see events/overflow.py); the
    task's body never raises (see BatchTask.run_batch)."""
    return current_app.tasks[task_name].run_batch(messages, drain)


def batch_name(messages: list[QueuedMessage], default: str) -> str:
    """What monitors (Flower) show a batch as: the task its messages came for, the names of all
    of them joined by "+" when they came for several, `default` for a drain of the overflow alone."""
    names = sorted({m.task for m in messages if m.task})
    return "+".join(names) if names else default


def events_in(messages: list[QueuedMessage]) -> int:
    """Events the messages carry (a message carries one event, or a bundle of them)."""
    return sum(len(m.args[0]) if m.args and isinstance(m.args[0], (list, tuple)) else 1 for m in messages)


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


class Dispatcher:
    """Hands ready batches to the pool, at most `limit` at a time, taking workspaces in turn.

    A workspace with a thousand full batches waiting gets one pool slot per round, like a workspace
    with one small batch: a burst of one customer cannot starve the others (fair share per
    workspace). A flood's overflow (its backlog, already late) lets the others' batches go first
    for up to DRAIN_PATIENCE, then takes its turn; and when another workspace's batch is due
    shortly (`next_batch_due`, kept by the buffer), the flood's drains leave one pool process free
    for it (of two or more), so a quiet workspace's batch does not wait for a flood's drain to end.
    Runs in the consumer's event loop (callbacks too), so it needs no lock; the buffer calls
    `pump` every tick as well, for the reserve's end.
    """

    def __init__(self, limit: int):
        self.limit = max(limit, 1)
        self.in_flight = 0
        self.drains = 0
        #: when the next batch of a workspace that is not flooding will be due (monotonic clock)
        self.next_batch_due = float("inf")
        #: per workspace, its entries waiting: (messages, start, kind, when submitted)
        self.ready: dict[str, deque[tuple[list[Any], Callable[[Callable[[], None]], None], str, float]]] = {}
        self.turns: deque[str] = deque()

    def submit(self, workspace: str, messages: list[Any], start: Callable[[Callable[[], None]], None],
               kind: str = "batch") -> None:
        """`start(finished)` dispatches the batch of `messages` and calls `finished()` once it has ended."""
        if workspace not in self.ready or not self.ready[workspace]:
            self.ready.setdefault(workspace, deque())
            self.turns.append(workspace)
        self.ready[workspace].append((messages, start, kind, time.monotonic()))
        self.pump()

    def pump(self) -> None:
        while self.in_flight < self.limit and self.turns:
            workspace = self._next()
            if workspace is None:
                return  # only floods' drains wait, and the last free process is kept for the others
            queue = self.ready[workspace]
            _, start, kind, _ = queue.popleft()
            if queue:
                self.turns.append(workspace)
            else:
                del self.ready[workspace]
            self.in_flight += 1
            self.drains += kind == DRAIN
            start(lambda kind=kind: self._finished(kind))

    def _next(self) -> str | None:
        """The next workspace in turn; a flood's overflow drain lets the others' batches go first,
        unless the drain has waited DRAIN_PATIENCE already (so a flood is never starved), and never
        takes the last free process when another workspace's batch is due shortly (None: nothing to start)."""
        now = time.monotonic()
        reserve = self.limit >= 2 and self.drains >= self.limit - 1 and self.next_batch_due - now < RESERVE_AHEAD
        for n, workspace in enumerate(self.turns):
            _, _, kind, submitted = self.ready[workspace][0]
            if kind != DRAIN or (not reserve and now - submitted >= DRAIN_PATIENCE):
                del self.turns[n]
                return workspace
        return None if reserve else self.turns.popleft()

    def _finished(self, kind: str = "batch") -> None:
        self.in_flight -= 1
        self.drains -= kind == DRAIN
        self.pump()

    def waiting(self) -> int:
        return sum(len(q) for q in self.ready.values())

    def holds(self, workspace: str, messages: list[Any]) -> bool:
        """Is this very list of messages still waiting for its turn?"""
        return any(waiting is messages for waiting, _, _, _ in self.ready.get(workspace, ()))

    def clear(self) -> list[Any]:
        """Forget the batches not yet dispatched; returns what they were submitted with."""
        dropped = [m for queue in self.ready.values() for messages, _, _, _ in queue for m in messages]
        self.ready.clear()
        self.turns.clear()
        return dropped


class Buffer:
    """One consumer's buffer for its batch tasks, a bucket per workspace; made anew at every consumer (re)start.

    A workspace's bucket holds its messages of every event queue (emails sent, replies, contact
    updates): they go to Salesforce together, one contact lookup and one write for all. It goes
    to the pool when it holds a whole batch, or when its oldest message has waited the
    workspace's linger (see `lingers`); when the worker holds as many messages as it may prefetch,
    the fullest bucket goes early so the consumer can keep reading.
    """

    def __init__(self, task: "BatchTask", consumer: Any, holdings: Holdings, lingers: Callable[[str], float],
                 dispatcher: Dispatcher, overflow: Any = None):
        #: the batch tasks this buffer takes messages for, by name (the first one runs the batches)
        self.tasks: dict[str, BatchTask] = {task.name: task}
        self.task = task
        self.pool = consumer.pool
        self.consumer = consumer
        self.holdings = holdings
        self.dispatcher = dispatcher
        self.lingers = lingers
        self.pending: dict[str, list[tuple[Any, QueuedMessage]]] = {}
        self.since: dict[str, float] = {}
        #: messages per workspace held here (buffered, waiting for the pool, or being synced)
        self.held: dict[str, int] = {}
        self.overflow = overflow
        self.spilling: list[tuple[str, Any, QueuedMessage]] = []
        #: workspaces whose messages go to their overflow until it is drained
        self.spilled: set[str] = set()
        #: when each workspace last sent a message here
        self.seen: dict[str, float] = {}
        #: when the overflows were last looked at, and the queue last sieved
        self.drains_checked = 0.0
        self.sieved = 0.0
        #: items on the queues at the last look (a backlog beyond the prefetch limit is sorted)
        self.backlog = 0
        #: per workspace, its batch that waits for a pool process and may still grow
        self.waiting: dict[str, list[tuple[Any, QueuedMessage]]] = {}
        #: per workspace with an overflow, since when its entries wait for a drain, and how many there were
        self.overflowing: dict[str, float] = {}
        self.overflow_sizes: dict[str, int] = {}
        self.timer = consumer.timer.call_repeatedly(min(task.flush_interval, FLUSH_TICK), self.flush_due)
        # with task events on (`sfsync worker -E`), each batch shows in Flower as one task run
        dispatcher_ = getattr(consumer, "event_dispatcher", None)
        self.events = dispatcher_ if getattr(dispatcher_, "enabled", False) else None

    def add(self, task: "BatchTask") -> None:
        """Take `task`'s messages too (each batch task of the worker registers as the consumer starts)."""
        self.tasks[task.name] = task

    def receiver(self, task: "BatchTask") -> Callable[..., None]:
        """The strategy Celery calls with each message for `task`."""
        def on_message(message, body, ack, reject, callbacks, **kwargs) -> None:
            self.on_message(task, message)
        return on_message

    def queues(self) -> list[str]:
        return sorted({t.queue for t in self.tasks.values()})

    def on_message(self, task: "BatchTask", message: Any) -> None:
        args, kwargs_, _ = message.decode()
        queued = QueuedMessage(message.headers.get("id"), tuple(args), dict(kwargs_),
                               dict(message.delivery_info or {}), task.name, task.queue,
                               **signed_parts(message.headers, message.body))
        workspace = workspace_hint(args)
        self.seen[workspace] = time.monotonic()
        self.holdings.tags.add(message.delivery_tag)
        if self._should_spill(workspace):
            self.spilling.append((workspace, message, queued))
            if len(self.spilling) >= SPILL_CHUNK:
                self.spill()
            return
        self.held[workspace] = self.held.get(workspace, 0) + 1
        bucket = self.pending.setdefault(workspace, [])
        if not bucket:
            self.since[workspace] = time.monotonic()
        bucket.append((message, queued))
        if len(bucket) >= self.task.flush_every:
            self.flush(workspace)
        elif self._held() >= self._prefetch_limit() and not self.dispatcher.waiting():
            # the pool is idle and the consumer may read no further: the fullest bucket goes early
            # (with batches already waiting for the pool, an early flush would only shrink batches)
            self.flush(max(self.pending, key=lambda ws: len(self.pending[ws])))

    def _should_spill(self, workspace: str) -> bool:
        """Spill a workspace that already holds two batches here while the worker nears its prefetch
        limit (others' messages may wait behind it), and keep spilling it while it has an overflow."""
        if self.overflow is None or not workspace:
            return False
        if workspace in self.spilled:
            return True
        if self.held.get(workspace, 0) >= 2 * self.task.flush_every and \
                self._held() >= self._prefetch_limit() * SPILL_PRESSURE and self._others_active(workspace):
            self.spilled.add(workspace)
            log.info("workspace %s floods the queues; its next messages wait in its overflow so others' can pass",
                     workspace, extra={"workspace_id": workspace})
            return True
        return False

    def _others_active(self, workspace: str) -> bool:
        """Did another workspace send anything lately? A lone workspace has nobody to let pass."""
        horizon = time.monotonic() - ACTIVE_WINDOW
        for ws, at in list(self.seen.items()):
            if at < horizon:
                del self.seen[ws]
            elif ws != workspace:
                return True
        return False

    def spill(self) -> None:
        """Write the messages set aside to their workspaces' overflows, then acknowledge them."""
        taken, self.spilling = self.spilling, []
        if not taken:
            return
        try:
            self.overflow.spill([(ws, self.overflow.entry(q.task, q.queue, q.id, list(q.args), q.kwargs,
                                                          signature=q.signature, body=q.body))
                                 for ws, _, q in taken])
        except Exception:  # Redis refused: they are synced from here like any other message
            log.warning("could not spill %d message(s) to the overflow; syncing them here", len(taken), exc_info=True)
            for ws, message, queued in taken:
                self.spilled.discard(ws)
                self.held[ws] = self.held.get(ws, 0) + 1
                self.pending.setdefault(ws, []).append((message, queued))
                self.since.setdefault(ws, time.monotonic())
            return
        now = time.monotonic()
        for ws, message, _ in taken:
            message.ack_log_error(log, ())
            self.holdings.tags.discard(message.delivery_tag)
            self.overflowing.setdefault(ws, now)

    def _held(self) -> int:
        return len(self.holdings.tags)

    def _prefetch_limit(self) -> int:
        qos = getattr(self.consumer, "qos", None)
        value = getattr(qos, "value", 0) or 0
        return max(int(value * 0.9), self.task.flush_every) if value else 1 << 30

    def flush_due(self) -> None:
        self.spill()
        now = time.monotonic()
        for workspace in [ws for ws, since in self.since.items() if now - since >= self.lingers(ws)]:
            self.flush(workspace)
        if self.overflow is not None and now - self.sieved >= SIEVE_EVERY:
            self.sieved = now
            self.sieve()
        if self.overflow is not None and now - self.drains_checked >= DRAIN_CHECK:
            self.drains_checked = now
            self.drain_overflows()
        elif self.overflowing:
            self._drains_due(now)
        self.dispatcher.next_batch_due = self._next_batch_due()
        self.dispatcher.pump()  # a reserve for the others' batches may have ended

    def _next_batch_due(self) -> float:
        """When the next bucket is due: traffic read as it comes, which a flood's drains must not
        hold up (what was sorted out of a backlog is late already, and the pool works flat out)."""
        return min((since + self.lingers(ws) for ws, since in self.since.items()), default=float("inf"))

    def sieve(self) -> None:
        """Move messages still on the queue straight into their workspaces' overflows.

        A flooding workspace's always, so the consumer reaches the others' messages behind them
        without reading the flood first. And while the queue holds more than this worker may
        prefetch (a backlog), every workspace it has lately seen: the consumer would otherwise
        meet a quiet workspace's messages one by one across the whole backlog and write each
        handful as its own small batch (a lookup and a write each time); sorted, a drain takes a
        batch of them at once. Nobody waits longer for it: their later messages come sooner.
        """
        targets = {ws for ws in self.spilled if is_workspace_id(ws)}
        if self.backlog > self._prefetch_limit():
            recent = time.monotonic() - ACTIVE_WINDOW
            seen = {ws for ws, at in self.seen.items() if at >= recent and is_workspace_id(ws)}
            if len(seen) > 1:  # one workspace alone fills whole batches from the queue anyway
                targets |= seen
        backlog = 0
        for queue in self.queues():
            try:
                if not targets:
                    backlog += self.overflow.depth(queue)
                    continue
                moved, left = self.overflow.sieve(queue, sorted(targets), SIEVE_SCAN)
            except Exception:  # Redis restarting: the consumer reads through the queue meanwhile
                log.debug("could not sieve %s", queue, exc_info=True)
                return
            backlog += left
            for workspace, count in moved.items():
                if count:
                    # its next messages follow the moved ones into the overflow, in order; the
                    # moved ones wait for company from now, as if they had been read
                    self.spilled.add(workspace)
                    self.overflowing.setdefault(workspace, time.monotonic())
                    log.debug("moved %d message(s) of %s from %s to its overflow", count, workspace, queue)
        self.backlog = backlog

    def drain_overflows(self) -> None:
        """Drain every workspace's overflow, a batch at a time, in the round-robin.

        A workspace's batch that runs while its overflow holds entries takes a chunk of them along
        (up to a whole batch in all). A workspace with no batch waiting gets a drain of its own once
        its overflow holds a whole batch or has waited the workspace's linger for company, as a
        bucket does; what its bucket sends meanwhile joins that drain. So a quiet workspace sorted
        out of a backlog is written in whole batches too, and a flood's drains take their turns."""
        try:
            waiting = self.overflow.pending(self.overflow.workspaces())
        except Exception:  # Redis restarting: the next check tries again
            log.debug("could not read the overflows", exc_info=True)
            return
        self.spilled &= set(waiting) | {ws for ws, _, _ in self.spilling}
        now = time.monotonic()
        self.overflowing = {ws: self.overflowing.get(ws, now) for ws in waiting}
        self.overflow_sizes = waiting
        self._drains_due(now)

    def _drains_due(self, now: float) -> None:
        """Drains of the overflows that hold a whole batch, or whose oldest entry (since it was moved
        or spilled there) has waited the workspace's linger; looked at every tick, as buckets are."""
        for ws, since in list(self.overflowing.items()):
            if self._has_backlog(ws) or now - since >= self.lingers(ws):
                self._submit_drain(ws)

    def _has_backlog(self, workspace: str) -> bool:
        """Does the workspace's overflow hold a whole batch or more (a flood's backlog, already late)?"""
        return self.overflow_sizes.get(workspace, 0) >= self.task.flush_every

    def _submit_drain(self, workspace: str) -> None:
        """Queue a drain of the workspace's overflow, unless a batch of it with room left waits
        already (which drains too)."""
        batch = self.waiting.get(workspace)
        if batch is not None and self.dispatcher.holds(workspace, batch) and \
                events_in([q for _, q in batch]) < self.task.flush_every:
            return
        # what arrives from now on waits (at most) a linger from here
        self.overflowing[workspace] = time.monotonic()
        drain: list[tuple[Any, QueuedMessage]] = []
        self.waiting[workspace] = drain
        # a flood's backlog (a whole batch or more) lets the others go first; a quiet workspace's
        # few messages sorted out of a backlog take their turn like any batch
        kind = DRAIN if self._has_backlog(workspace) else "batch"
        self.dispatcher.submit(workspace, drain, lambda finished: self._start(workspace, drain, finished), kind=kind)

    def flush(self, workspace: str | None = None) -> None:
        """Send a workspace's bucket (every bucket when None) to the pool, a batch at a time.

        While the pool is busy a workspace's batch may wait for its turn; what the workspace sends
        meanwhile joins that batch (up to a whole batch) instead of queueing as another small one:
        one contact lookup and one write for both, and no later than it would have gone anyway.
        """
        for ws in ([workspace] if workspace is not None else list(self.pending)):
            bucket = self.pending.pop(ws, [])
            self.since.pop(ws, None)
            waiting = self.waiting.get(ws)
            if waiting is not None and bucket and self.dispatcher.holds(ws, waiting):
                room = max(self.task.flush_every - len(waiting), 0)
                waiting.extend(bucket[:room])
                bucket = bucket[room:]
            for start in range(0, len(bucket), self.task.flush_every):
                taken = bucket[start:start + self.task.flush_every]
                self.waiting[ws] = taken
                # a flood's full batch read off the queue is its backlog too: it lets the others go first
                kind = DRAIN if len(taken) >= self.task.flush_every and self._has_backlog(ws) else "batch"
                # the dispatcher holds `taken` itself, so what joins it later is released at a stop too
                self.dispatcher.submit(ws, taken, lambda finished, ws=ws, taken=taken: self._start(ws, taken, finished),
                                       kind=kind)

    def _start(self, workspace: str, taken: list[tuple[Any, QueuedMessage]], finished: Callable[[], None]) -> None:
        """The batch's turn came: nothing joins it from now on; it drains the workspace's overflow
        too if it has one (a drain of its own always does)."""
        if self.waiting.get(workspace) is taken:
            del self.waiting[workspace]
        drain = workspace if not taken or workspace in self.overflowing else None
        self._dispatch(workspace, taken, drain, finished)

    def _release(self, workspace: str, count: int) -> None:
        """`count` messages of `workspace` are no longer held here (their batch ended)."""
        left = self.held.get(workspace, 0) - count
        if left > 0:
            self.held[workspace] = left
        else:
            self.held.pop(workspace, None)

    def _event(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            try:
                self.events.send(kind, **fields)
            except Exception:  # monitoring must never cost a batch
                log.debug("could not send a %s event", kind, exc_info=True)

    def _dispatch(self, workspace: str, taken: list[tuple[Any, QueuedMessage]], drain: str | None,
                  finished: Callable[[], None]) -> None:
        messages, queued = [m for m, _ in taken], [q for _, q in taken]
        batch_id, started = uuid.uuid4().hex, time.monotonic()
        # ids and counts only: the events' content never goes to the event stream
        self._event("task-received", uuid=batch_id, name=batch_name(queued, self.task.name),
                    args=f"({len(messages)} messages{', draining ' + drain if drain else ''})",
                    kwargs="{}", root_id=batch_id, parent_id=None, retries=0, eta=None, expires=None)

        def accepted(pid: int, _time_accepted: float) -> None:
            self._event("task-started", uuid=batch_id, pid=pid)

        def done(result: Any) -> None:
            finished()
            self._release(workspace, len(taken))
            if drain is not None and isinstance(result, int) and result >= self.task.flush_every \
                    and workspace in self.overflowing:
                self._submit_drain(workspace)  # a whole batch came out: there is likely more
            for message in messages:
                message.ack_log_error(log, ())
                self.holdings.tags.discard(message.delivery_tag)
            self._event("task-succeeded", uuid=batch_id, result=repr(result), runtime=time.monotonic() - started)

        def failed(exc: Any) -> None:
            finished()
            self._release(workspace, len(taken))
            self._event("task-failed", uuid=batch_id, exception=repr(exc)[:200], traceback="")
            # the pool process died (or was stopped at shutdown): hand the batch back at once
            log.error("batch of %d message(s) of %s lost its process (%r); they go back on their queues",
                      len(messages), workspace, exc)
            for message in messages:
                message.reject_log_error(log, (), requeue=True)
                self.holdings.tags.discard(message.delivery_tag)

        try:
            self.pool.apply_async(run_batch, args=(self.task.name, queued, drain),
                                  accept_callback=accepted, callback=done, error_callback=failed)
        except Exception as exc:  # a pool that is shutting down: the messages go back to the queue
            failed(exc)

    def stop(self) -> None:
        self.timer.cancel()
        # messages never dispatched belong to the lost connection: Redis hands them out again only
        # if their leases stop being renewed
        for bucket in self.pending.values():
            for message, _ in bucket:
                self.holdings.tags.discard(message.delivery_tag)
        for message, _ in self.dispatcher.clear():
            self.holdings.tags.discard(message.delivery_tag)
        for _, message, _ in self.spilling:
            self.holdings.tags.discard(message.delivery_tag)
        self.pending, self.since, self.held, self.spilling, self.waiting = {}, {}, {}, [], {}
        self.overflowing, self.overflow_sizes = {}, {}


def shed(message: Any) -> None:
    """Let go of a held message's body and raw payload once the consumer has taken it in.

    Acks and rejects need only the delivery tag (Redis keeps the message itself for redelivery),
    and a worker holds its whole prefetch while batches fill: the copies were most of its memory.
    """
    for name in ("body", "_raw", "_decoded_cache"):
        try:
            setattr(message, name, None)
        except AttributeError:  # a message class without that attribute
            pass


_WORKSPACE = re.compile(r'"workspace_id"\s*:\s*"((?:[^"\\]|\\.){1,200})"')


def workspace_hint(args: Any) -> str:
    """The workspace a message's (first) event names, cheaply, for bucketing only ("" when none).

    A message naming none, or several, is still synced correctly: the pool process parses every
    event and groups them by workspace again; the hint only decides who it waits for company with.
    """
    first = args[0] if isinstance(args, (list, tuple)) and args else None
    if isinstance(first, list):
        first = first[0] if first else None
    if isinstance(first, dict):
        value = first.get("workspace_id")
        return value if isinstance(value, str) else ""
    if isinstance(first, (str, bytes)):
        text = first.decode("utf-8", "replace") if isinstance(first, bytes) else first
        found = _WORKSPACE.search(text[:4096])
        return found.group(1) if found else ""
    return ""


class BatchTask(Task):
    """A task run on lists of messages; subclasses set `queue` and implement `run_batch(messages, drain)`."""

    abstract = True
    flush_every = 200
    flush_interval = 1.0
    queue = ""
    holdings = Holdings()
    #: seconds a workspace's events may wait for company (set by the worker; the flush interval by default)
    lingers: Callable[[str], float] | None = None
    #: makes the consumer's overflow store (set by the worker; None: no spilling)
    overflow_factory: Callable[[], Any] | None = None
    #: shared by every batch task of the process: one round-robin over workspaces for the whole pool
    dispatcher: Dispatcher | None = None
    #: the consumer's buffer, shared by every batch task, and the broker connection it was made for
    shared: tuple[Any, Buffer] | None = None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a batch task runs through its consumer buffer")

    def Strategy(self, task: "BatchTask", app: Any, consumer: Any):
        # Celery calls this for every task at every consumer start, reconnections included: the
        # first batch task of a start makes the buffer, the others join it. The old buffer's
        # messages belong to a lost connection (Redis hands them out again), so start afresh.
        connection = getattr(consumer, "connection", None)
        if BatchTask.shared is not None:
            made_for, buffer = BatchTask.shared
            if connection is not None and made_for is connection:
                buffer.add(task)
                return buffer.receiver(task)
            buffer.stop()
        lingers = BatchTask.lingers or (lambda _ws: task.flush_interval)
        if BatchTask.dispatcher is None:
            # one batch per pool process in flight; the rest wait their turn in the consumer, where
            # what their workspace sends meanwhile can still join them
            BatchTask.dispatcher = Dispatcher(int(getattr(consumer.pool, "num_processes", 0) or 1))
        overflow = BatchTask.overflow_factory() if BatchTask.overflow_factory is not None else None
        buffer = Buffer(task, consumer, BatchTask.holdings, lingers, BatchTask.dispatcher, overflow)
        BatchTask.shared = (connection, buffer)
        return buffer.receiver(task)

    def run_batch(self, messages: list[QueuedMessage], drain: str | None = None) -> int:
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

"""Fair share between workspaces: what the consumer starts, spills, sieves and drains, decided from a snapshot and the time.

The rule, in the order a message meets it:

- **Buckets.** A workspace's messages wait in its bucket for company; a bucket goes to the pool
  when it holds a whole batch, when its due time (the first message's arrival plus the
  workspace's linger) has passed, or early — the fullest one — when the consumer holds as many
  messages as it may prefetch and no batch is waiting for a pool process (with batches waiting,
  an early flush would only shrink batches).
- **Turns.** Batches waiting for a pool process take turns by workspace, in rotation: a workspace
  with a thousand batches waiting gets one turn per round, like one with a single small batch.
- **Floods.** A workspace that holds two whole batches while the consumer is half-way to its
  prefetch limit and another workspace has sent something within ACTIVE_WINDOW floods the
  queues: its further messages are spilled to its overflow (kept in Redis, in order) until the
  overflow is drained, so the others' messages behind them are read at once.
- **The sieve.** A flooding workspace's messages still on the queues are moved straight to its
  overflow; and while the queues hold a backlog (more than BACKLOG messages, about a second of the
  consumer's reading), every workspace active within ACTIVE_WINDOW is sieved too, when there are
  at least two: each is then written in whole batches instead of the handfuls the queue's
  interleaving would give, and a flood is moved aside within a sweep of its start, before the
  consumer has read enough of it to call it one.
- **Drains.** An overflow gets a drain of its own (a batch of no messages that claims entries)
  once it holds a whole batch or its due time has passed, unless a batch of that workspace with
  room left is waiting (which drains it as it starts: any batch of a workspace with an overflow
  takes a chunk of it along). A drain that brought a whole batch back is followed by another.
- **Backlogs yield.** A batch of a flood's backlog — a drain of an overflow that holds a whole
  batch, or a whole batch read off the queue while its workspace's overflow holds one — is
  `BatchKind.BACKLOG`: it lets the others' batches go first for up to DRAIN_PATIENCE, then takes
  its turn (a flood is never starved, and is written at full speed when the others are quiet).
- **The reserve.** While another workspace's bucket is due within RESERVE_AHEAD, backlog batches
  leave one pool process (of two or more) free for it.

Everything here is a pure function of its arguments: the consumer (workers/consumer/state.py)
builds the snapshot and carries out the answers, the table tests and the simulation
(benchmarks/simulate.py) drive it with snapshots and a fake clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Protocol

from schemas.workspace import is_workspace_id


class BatchKind(enum.Enum):
    """How a batch waits for its turn at the pool."""

    #: traffic read as it comes, and a quiet workspace's few messages sorted out of a backlog
    FRESH = "fresh"
    #: a flood's backlog, already late: lets the others' batches go first (see FairShare.next_start)
    BACKLOG = "backlog"


class Admission(enum.Enum):
    """What becomes of a message the consumer has just read."""

    BUCKET = "bucket"  # it waits for company in its workspace's bucket
    SPILL = "spill"  # it goes to its workspace's overflow (acknowledged once written there)


@dataclass(frozen=True)
class Tunables:
    """The policy's numbers; the defaults are the ones measured in docs/benchmarks.md."""

    #: events a batch holds at most (one collection write)
    batch_size: int = 200
    #: share of the prefetch count the consumer fills before it counts as unable to read further
    prefetch_share: float = 0.9
    #: share of that limit the consumer holds before a workspace with two whole batches is spilled
    spill_pressure: float = 0.5
    #: seconds a workspace counts as active after its last message
    active_window: float = 60.0
    #: seconds a backlog batch lets the others' batches go first before it takes its turn
    drain_patience: float = 5.0
    #: seconds ahead a due bucket keeps one pool process free of backlog batches
    reserve_ahead: float = 1.0
    #: messages on the queues from which they hold a backlog, sorted per workspace (about a second
    #: of one consumer's reading under load; a flood published faster than that is moved aside at once)
    backlog: int = 400


class BucketView(Protocol):
    """A workspace's messages read and not yet sent to the pool."""

    @property
    def size(self) -> int: ...

    @property
    def due(self) -> float: ...  # when it goes whatever its size (arrival of its first + linger)


class OverflowView(Protocol):
    """A workspace's overflow as last seen."""

    @property
    def size(self) -> int: ...  # entries waiting in it (not claimed)

    @property
    def due(self) -> float: ...  # when its entries have waited their linger for company


class BatchView(Protocol):
    """A batch waiting for a pool process."""

    @property
    def workspace(self) -> str: ...

    @property
    def kind(self) -> BatchKind: ...

    @property
    def submitted(self) -> float: ...

    @property
    def events(self) -> int: ...

    @property
    def started(self) -> bool: ...


@dataclass(frozen=True)
class Snapshot:
    """What one consumer holds and knows at a moment; the policy decides from this alone."""

    #: pool processes (batches in flight at most)
    processes: int
    #: the consumer's prefetch count (messages it may hold unacknowledged); 0: unbounded
    prefetch: int
    #: messages held in all: bucketed, set aside for the overflow, waiting for or in a pool process
    held: int
    #: per workspace, its messages held in buckets, waiting batches and batches in flight
    held_by_workspace: Mapping[str, int]
    buckets: Mapping[str, BucketView]
    #: each workspace's first waiting batch, in turn order
    turns: Sequence[BatchView]
    #: batches waiting for a pool process, in all
    waiting: int
    #: per workspace, its newest waiting batch (what it sends next joins it, while it has room)
    open_batches: Mapping[str, BatchView]
    in_flight: int
    #: batches of kind BACKLOG in flight
    backlog_in_flight: int
    overflows: Mapping[str, OverflowView]
    #: workspaces whose messages go to their overflow until it is drained
    spilled: AbstractSet[str]
    #: when each workspace last sent a message
    seen: Mapping[str, float]
    #: items on the event queues at the last look (the sieve's)
    queued: int
    #: whether there is an overflow store at all (without one nothing is spilled, sieved or drained)
    overflow: bool = True


class FairShare:
    """The fair-share policy (see the module's docstring); every method is pure."""

    def __init__(self, tunables: Tunables = Tunables()):
        self.t = tunables

    def prefetch_limit(self, s: Snapshot) -> int:
        """Messages the consumer holds when it counts as unable to read further (a batch at least)."""
        if not s.prefetch:
            return 1 << 30
        return max(int(s.prefetch * self.t.prefetch_share), self.t.batch_size)

    # --- a message arrives ------------------------------------------------------------------

    def admit(self, s: Snapshot, workspace: str, now: float) -> Admission:
        """Bucket the message, or spill it: its workspace is spilled already, or floods the queues
        now (two whole batches held, the consumer half-way to its limit, another workspace active)."""
        if not s.overflow or not workspace:
            return Admission.BUCKET
        if workspace in s.spilled:
            return Admission.SPILL
        if s.held_by_workspace.get(workspace, 0) >= 2 * self.t.batch_size \
                and s.held >= self.prefetch_limit(s) * self.t.spill_pressure \
                and self._others_active(s, workspace, now):
            return Admission.SPILL
        return Admission.BUCKET

    def _others_active(self, s: Snapshot, workspace: str, now: float) -> bool:
        horizon = now - self.t.active_window
        return any(ws != workspace and at >= horizon for ws, at in s.seen.items())

    def flush_on_arrival(self, s: Snapshot, workspace: str) -> list[str]:
        """Buckets that go now that `workspace`'s grew: itself when whole, else the fullest when
        the consumer may read no further and the pool has nothing waiting."""
        bucket = s.buckets.get(workspace)
        if bucket is not None and bucket.size >= self.t.batch_size:
            return [workspace]
        if s.buckets and s.held >= self.prefetch_limit(s) and not s.waiting:
            return [max(s.buckets, key=lambda ws: s.buckets[ws].size)]
        return []

    # --- every tick --------------------------------------------------------------------------

    def due(self, s: Snapshot, now: float) -> list[str]:
        """Buckets whose due time has passed."""
        return [ws for ws, bucket in s.buckets.items() if now >= bucket.due]

    def sieve_targets(self, s: Snapshot, now: float) -> frozenset[str]:
        """Workspaces whose messages still on the queues move to their overflows now."""
        if not s.overflow:
            return frozenset()
        targets = {ws for ws in s.spilled if is_workspace_id(ws)}
        if s.queued > self.t.backlog:
            horizon = now - self.t.active_window
            active = {ws for ws, at in s.seen.items() if at >= horizon and is_workspace_id(ws)}
            if len(active) > 1:  # one workspace alone fills whole batches from the queue anyway
                targets |= active
        return frozenset(targets)

    def drains_due(self, s: Snapshot, now: float) -> list[str]:
        """Overflows that get a drain of their own now: a whole batch waits in them, or their due
        time has passed, and no batch of theirs with room left waits (it drains them as it starts)."""
        return [ws for ws, overflow in s.overflows.items()
                if (overflow.size >= self.t.batch_size or now >= overflow.due) and not self._waits_with_room(s, ws)]

    def _waits_with_room(self, s: Snapshot, workspace: str) -> bool:
        batch = s.open_batches.get(workspace)
        return batch is not None and not batch.started and batch.events < self.t.batch_size

    # --- what a batch is --------------------------------------------------------------------

    def has_backlog(self, s: Snapshot, workspace: str) -> bool:
        """Does the workspace's overflow hold a whole batch or more (a flood's backlog, already late)?"""
        overflow = s.overflows.get(workspace)
        return overflow is not None and overflow.size >= self.t.batch_size

    def kind(self, s: Snapshot, workspace: str, messages: int) -> BatchKind:
        """A batch read off the queue: a whole one of a workspace with a backlog is backlog too."""
        if messages >= self.t.batch_size and self.has_backlog(s, workspace):
            return BatchKind.BACKLOG
        return BatchKind.FRESH

    def drain_kind(self, s: Snapshot, workspace: str) -> BatchKind:
        """A drain of a flood's backlog yields; a quiet workspace's few sorted messages take their turn."""
        return BatchKind.BACKLOG if self.has_backlog(s, workspace) else BatchKind.FRESH

    def drains_along(self, s: Snapshot, workspace: str, messages: int) -> bool:
        """Does a batch that starts now take a chunk of its workspace's overflow along (a drain of
        its own always does)?"""
        return messages == 0 or workspace in s.overflows

    def drain_again(self, s: Snapshot, workspace: str, drained: bool, events_done: int) -> bool:
        """After a batch that drained: a whole batch came out, so there is likely more."""
        return drained and events_done >= self.t.batch_size and workspace in s.overflows \
            and not self._waits_with_room(s, workspace)

    # --- the pool ----------------------------------------------------------------------------

    def next_due(self, s: Snapshot) -> float:
        """When the next bucket is due: traffic read as it comes, which backlog batches must not hold up."""
        return min((bucket.due for bucket in s.buckets.values()), default=float("inf"))

    def next_start(self, s: Snapshot, now: float) -> int | None:
        """Which of `s.turns` starts now (an index), or None: nothing may start.

        The first in turn that is FRESH, or BACKLOG and has waited DRAIN_PATIENCE; with none, the
        first in turn (nobody else waits) — unless the reserve holds: backlog batches already take
        all processes but one and another workspace's bucket is due within RESERVE_AHEAD.
        """
        if s.in_flight >= s.processes or not s.turns:
            return None
        reserve = s.processes >= 2 and s.backlog_in_flight >= s.processes - 1 \
            and self.next_due(s) - now < self.t.reserve_ahead
        for n, batch in enumerate(s.turns):
            if batch.kind is not BatchKind.BACKLOG or (not reserve and now - batch.submitted >= self.t.drain_patience):
                return n
        return None if reserve else 0

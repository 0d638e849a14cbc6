"""The consumer's buffer: a bucket per workspace for the messages read, and what each workspace holds in all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workers.consumer.batches import Batch, Held
from workers.consumer.policy import BatchKind


@dataclass
class Bucket:
    """A workspace's messages of every event queue (emails sent, replies, contact updates): they go
    to Salesforce together, one contact lookup and one write for all."""

    #: when it goes whatever its size: its first message's arrival plus the workspace's linger
    due: float
    items: list[Held] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.items)


class Buffer:
    """Buckets per workspace, the count of messages each workspace holds (bucketed, waiting for a
    pool process, being synced) and, per workspace, its newest batch still waiting (open to join)."""

    def __init__(self, batch_size: int, lingers: Callable[[str], float]):
        self.batch_size = batch_size
        self.lingers = lingers
        self.buckets: dict[str, Bucket] = {}
        self.held: dict[str, int] = {}
        self.open: dict[str, Batch] = {}

    def add(self, workspace: str, held: Held, now: float) -> None:
        self.held[workspace] = self.held.get(workspace, 0) + 1
        bucket = self.buckets.get(workspace)
        if bucket is None:
            bucket = self.buckets[workspace] = Bucket(now + self.lingers(workspace))
        bucket.items.append(held)

    def flush(self, workspace: str, kind_of: Callable[[int], BatchKind], now: float) -> list[Batch]:
        """Empty the workspace's bucket: what fits joins its open batch, the rest goes in new
        batches (`kind_of(messages)` says each one's kind); returns the new batches, the last of
        which is the workspace's open one from now on."""
        bucket = self.buckets.pop(workspace, None)
        items = bucket.items if bucket is not None else []
        waiting = self.open.get(workspace)
        if waiting is not None and items:
            items = waiting.join(items)
        made = []
        for start in range(0, len(items), self.batch_size):
            taken = items[start:start + self.batch_size]
            made.append(Batch(workspace, kind_of(len(taken)), now, self.batch_size, taken))
        if made:
            self.open[workspace] = made[-1]
        return made

    def opened(self, batch: Batch) -> None:
        """`batch` (a drain) is the workspace's open batch from now on."""
        self.open[batch.workspace] = batch

    def started(self, batch: Batch) -> None:
        """The batch's turn came: nothing joins it from now on."""
        batch.start()
        if self.open.get(batch.workspace) is batch:
            del self.open[batch.workspace]

    def release(self, workspace: str, count: int) -> None:
        """`count` messages of `workspace` are no longer held here (their batch ended)."""
        left = self.held.get(workspace, 0) - count
        if left > 0:
            self.held[workspace] = left
        else:
            self.held.pop(workspace, None)

    def clear(self) -> list[Held]:
        """Forget every bucket; returns what they held."""
        dropped = [held for bucket in self.buckets.values() for held in bucket.items]
        self.buckets, self.held, self.open = {}, {}, {}
        return dropped

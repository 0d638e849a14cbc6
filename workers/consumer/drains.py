"""Drains: the overflows the consumer knows of, and how much of one a batch claims in its pool process.

Every DRAIN_CHECK seconds the consumer reads which workspaces have an overflow and how many
entries wait in each; between reads it notes the overflows it has just written to (a spill, a
sieve). Each overflow has a due time, like a bucket: its entries' linger for company, counted
from when they were moved or spilled there, or from its last drain. When to drain is the
policy's call (FairShare.drains_due, drain_again); a drain itself runs in a pool process, which
claims entries with a lease (events/overflow.py) up to the batch's room (`claim_for`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.consumer.batches import QueuedMessage, events_in

log = logging.getLogger("sfsync.worker")

#: seconds between reads of the overflows' sizes
DRAIN_CHECK = 0.5


@dataclass
class Overflowing:
    """A workspace's overflow as the consumer last saw it."""

    #: entries waiting in it (as of the last read; 0 until then)
    size: int
    #: when its entries have waited the workspace's linger for company
    due: float


class Drains:
    """The overflows of every workspace, as this consumer last saw them."""

    def __init__(self, store: Any, lingers: Callable[[str], float]):
        #: the overflow store (events.overflow.Overflow or a stand-in with `workspaces` and `pending`)
        self.store = store
        self.lingers = lingers
        self.overflows: dict[str, Overflowing] = {}

    def noticed(self, workspace: str, now: float) -> None:
        """Entries were just written to the workspace's overflow (they wait for company from now)."""
        if workspace not in self.overflows:
            self.overflows[workspace] = Overflowing(0, now + self.lingers(workspace))

    def drained(self, workspace: str, now: float) -> None:
        """A drain of the workspace was just queued: what arrives from now on waits a linger from here."""
        overflow = self.overflows.get(workspace)
        if overflow is not None:
            overflow.due = now + self.lingers(workspace)

    def refresh(self, now: float) -> bool:
        """Read every overflow's size (empty ones are forgotten); False when Redis could not be read."""
        try:
            sizes = self.store.pending(self.store.workspaces())
        except Exception:  # Redis restarting: the next check tries again
            log.debug("could not read the overflows", exc_info=True)
            return False
        known = self.overflows
        self.overflows = {ws: Overflowing(size, known[ws].due if ws in known else now + self.lingers(ws))
                          for ws, size in sizes.items()}
        return True

    def clear(self) -> None:
        self.overflows = {}


def claim_for(batch_size: int, messages: list[QueuedMessage]) -> tuple[int, bool] | None:
    """How much of its workspace's overflow a batch that drains claims in its pool process:
    (events at most, whether at least one entry) — a drain of its own takes at least one entry;
    a batch that goes along fills only the room its messages leave; None: no room left."""
    room = batch_size - events_in(messages)
    if messages and room <= 0:
        return None
    return max(room, 1), not messages

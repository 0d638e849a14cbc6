"""The sieve: workspaces' messages still on the event queues moved straight into their overflows.

A flooding workspace's messages are moved so the consumer reaches the others' messages behind
them without reading the flood first; while the queues hold a backlog, every active workspace's
are, so each is written in whole batches (FairShare.sieve_targets says whose). The move is one
atomic Redis script per queue (events/lua/overflow_sieve.lua) that reads each message's
`sfsync_workspace` header: a message without it stays on the queue and is read as usual.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("sfsync.worker")

#: seconds between sweeps of the queues, and items looked at per queue and sweep
SIEVE_EVERY = 0.25
SIEVE_SCAN = 2_000


class Sieve:
    """Sweeps the consumer's event queues; remembers how many items they held at the last look."""

    def __init__(self, store: Any):
        #: the overflow store (events.overflow.Overflow or a stand-in with `sieve` and `depth`)
        self.store = store
        #: items on the queues at the last look (a backlog beyond the prefetch limit is sorted)
        self.queued = 0

    def sweep(self, queues: list[str], targets: frozenset[str]) -> dict[str, int]:
        """Move the targets' messages among the oldest SIEVE_SCAN of each queue; returns how many
        moved per workspace (none when Redis could not be reached: the read loop goes on meanwhile)."""
        moved: dict[str, int] = {}
        queued = 0
        for queue in queues:
            try:
                if not targets:
                    queued += self.store.depth(queue)
                    continue
                counts, left = self.store.sieve(queue, sorted(targets), SIEVE_SCAN)
            except Exception:  # Redis restarting: the consumer reads through the queue meanwhile
                log.debug("could not sieve %s", queue, exc_info=True)
                return moved
            queued += left
            for workspace, count in counts.items():
                if count:
                    moved[workspace] = moved.get(workspace, 0) + count
                    log.debug("moved %d message(s) of %s from %s to its overflow", count, workspace, queue)
        self.queued = queued
        return moved

"""Floods: which workspaces were seen lately, which are spilled, and the spilling of their messages to the overflow.

A spilled workspace's messages are set aside as they are read, written to its overflow
(events/overflow.py) SPILL_CHUNK at a time or at the next tick, and acknowledged once written:
the consumer reads on past them to the other workspaces' messages. A workspace stays spilled
until its overflow has been drained (`keep_only`). Which workspace floods is the policy's call
(FairShare.admit); this module keeps the facts it decides from and carries out the spill.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.consumer.batches import Held, events_in
from workers.consumer.leases import Holdings, each_message

log = logging.getLogger("sfsync.worker")

#: messages set aside for the overflow are written in chunks of this many (or at the next tick)
SPILL_CHUNK = 100


class Floods:
    """When each workspace last sent a message, the spilled workspaces, and what waits to be spilled."""

    def __init__(self, store: Any, holdings: Holdings):
        #: the overflow store (events.overflow.Overflow or a stand-in with `spill` and `entry`)
        self.store = store
        self.holdings = holdings
        self.seen: dict[str, float] = {}
        self.spilled: set[str] = set()
        self.aside: list[tuple[str, Held]] = []

    def saw(self, workspace: str, now: float) -> None:
        self.seen[workspace] = now

    def forget_quiet(self, now: float, window: float) -> None:
        """Forget the workspaces that sent nothing for `window` seconds."""
        horizon = now - window
        for ws in [ws for ws, at in self.seen.items() if at < horizon]:
            del self.seen[ws]

    def spilling(self, workspace: str) -> None:
        """From now on `workspace`'s messages go to its overflow."""
        if workspace not in self.spilled:
            self.spilled.add(workspace)
            log.info("workspace %s floods the queues; its next messages wait in its overflow so others' can pass",
                     workspace, extra={"workspace_id": workspace})

    def set_aside(self, workspace: str, held: Held) -> bool:
        """Keep the message for the next spill; True when a whole chunk waits."""
        self.aside.append((workspace, held))
        return len(self.aside) >= SPILL_CHUNK

    def spill(self) -> tuple[list[str], list[tuple[str, Held]]]:
        """Write what was set aside to the workspaces' overflows, then acknowledge it.

        Returns (workspaces spilled to, messages Redis refused): those are synced from the
        consumer like any other message, and their workspaces are no longer spilled.
        """
        taken, self.aside = self.aside, []
        if not taken:
            return [], []
        try:
            self.store.spill([(ws, self.store.entry(q.task, q.queue, q.id, list(q.arguments()), q.kwargs, events_in([q]),
                                                    q.headers, signature=q.signature, body=q.body))
                              for ws, (_, q) in taken])
        except Exception:  # Redis refused: they are synced from here like any other message
            log.warning("could not spill %d message(s) to the overflow; syncing them here", len(taken), exc_info=True)
            for ws, _ in taken:
                self.spilled.discard(ws)
            return [], taken
        messages = [message for _, (message, _) in taken]
        self.holdings.let_go(messages)
        each_message(messages, lambda message: message.ack(), "acknowledge")
        return list(dict.fromkeys(ws for ws, _ in taken)), []

    def keep_only(self, overflowing: set[str]) -> None:
        """A flood ends when its overflow is drained and nothing of it waits to be spilled."""
        self.spilled &= overflowing | {ws for ws, _ in self.aside}

    def clear(self) -> list[Held]:
        dropped = [held for _, held in self.aside]
        self.seen, self.spilled, self.aside = {}, set(), []
        return dropped

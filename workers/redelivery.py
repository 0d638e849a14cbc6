"""Delivery counters and marks in Redis: how often a message came back, and whether it was being synced when its worker died."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis

from events.keys import key
from events.lua import script
from workers.decide import History
from workers.messages import BatchItem

#: seconds a counter or mark lives beyond the redeliveries it must count (each comes one visibility
#: timeout plus a restore sweep after the previous one)
SWEEP_ALLOWANCE = 300


def first_failure_at(item: BatchItem) -> float | None:
    """Epoch seconds of the event's first transient failure, carried in its retry meta."""
    return _meta_time(item, "first_failure_at")


def waiting_since(item: BatchItem) -> float | None:
    """Epoch seconds the email began waiting for its contact, carried by a released waiting email."""
    return _meta_time(item, "waiting_since")


def _meta_time(item: BatchItem, name: str) -> float | None:
    text = item.meta.get(name)
    try:
        return datetime.fromisoformat(text).timestamp() if isinstance(text, str) else None
    except (ValueError, OverflowError, OSError):
        return None


class Redeliveries:
    """Per-message delivery counts and per-event "being synced" marks; both survive a killed worker."""

    def __init__(self, client: redis.Redis, workspace_id: str, *, max_deliveries: int, visibility_timeout: float):
        self.redis = client
        self.workspace_id = workspace_id
        self.ttl = int((max_deliveries + 2) * (visibility_timeout + SWEEP_ALLOWANCE))

    def _count_key(self, task_id: str) -> str:
        return key(self.workspace_id, "deliveries", task_id)

    def _mark_key(self, item_key: str) -> str:
        return key(self.workspace_id, "marked", item_key)

    def count(self, items: list[BatchItem]) -> list[int]:
        """Count this delivery of each message (the events of a bundle share their message's count)."""
        counted = list(dict.fromkeys(it.task_id for it in items if it.task_id))
        if not counted:
            return [1] * len(items)
        values = script(self.redis, "deliveries_count")(keys=[self._count_key(t) for t in counted], args=[self.ttl])
        # keyed by optional ids: an item without a task id finds nothing and counts once
        by_id: dict[str | None, int] = {task_id: int(value) for task_id, value in zip(counted, values)}
        return [by_id.get(it.task_id, 1) for it in items]

    def histories(self, items: list[BatchItem]) -> list[History]:
        """Each event's history as `decide` needs it: attempts, deliveries (counted now), strikes."""
        deliveries = self.count(items)
        redelivered = [it.key for it, times in zip(items, deliveries) if times > 1 and it.key]
        # keyed by optional keys: an item without a key has no mark, so no strike
        strikes: dict[str | None, Any] = dict(zip(redelivered, self.redis.mget([self._mark_key(k) for k in redelivered]))) \
            if redelivered else {}
        return [History(attempt=it.attempt, deliveries=times, strikes=int(strikes.get(it.key) or 0),
                        first_failure_at=first_failure_at(it), waiting_since=waiting_since(it))
                for it, times in zip(items, deliveries)]

    def finished(self, items: list[BatchItem]) -> None:
        """Every message of the batch was settled: its counters are no longer needed."""
        names = {self._count_key(it.task_id) for it in items if it.task_id}
        if names:
            self.redis.delete(*names)

    @contextmanager
    def marked(self, items: list[BatchItem]) -> Iterator[None]:
        """Mark events while they are synced; a mark left behind names the event its worker died on."""
        names = [self._mark_key(it.key) for it in items if it.key]
        if names:
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.incr(name)
                pipe.expire(name, self.ttl)
            pipe.execute()
        yield
        if names:
            self.redis.delete(*names)

"""The batch task: a Celery task whose messages go through the consumer's state and run in the pool a batch at a time."""

from __future__ import annotations

from typing import Any

from celery import Task

from workers.consumer.batches import QueuedMessage
from workers.consumer.state import ConsumerState


class BatchTask(Task):
    """A task run on lists of messages; subclasses set `queue` and implement `run_batch(messages, drain)`."""

    abstract = True
    flush_every = 200
    flush_interval = 1.0
    queue = ""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a batch task runs through its consumer's state")

    # Celery's Task names its strategy by a dotted path; a method in its place is also called (the hook)
    def Strategy(self, task: "BatchTask", app: Any, consumer: Any):  # type: ignore[override]
        # Celery calls this for every task at every consumer start, reconnections included
        return ConsumerState.for_start(task, app, consumer).receiver(task)

    def run_batch(self, messages: list[QueuedMessage], drain: str | None = None) -> int:
        raise NotImplementedError

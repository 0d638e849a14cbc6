"""Thin Celery task shells: one batch task per event queue, each handing its batch to the runtime."""

from __future__ import annotations

from celery import Celery
from celery_batches import Batches

from events.topology import ROUTES
from schemas.settings import Settings


def register(app: Celery, settings: Settings) -> None:
    """Register the batch tasks (and housekeeping tasks) on `app`."""
    for task_name, queue in ROUTES.values():
        _register_batch_task(app, settings, task_name, queue)


def _register_batch_task(app: Celery, settings: Settings, task_name: str, queue: str) -> None:
    def run_batch(requests):
        # celery-batches acks the whole batch whatever happens, so this must never raise:
        # the runtime decides written / retry / dead-letter for each message itself.
        from workers.runtime import process_batch

        process_batch(app, task_name, queue, requests)

    run_batch.__name__ = task_name.replace(".", "_")
    app.task(base=Batches, name=task_name, flush_every=settings.batch_size,
             flush_interval=settings.flush_interval, acks_late=True, ignore_result=True)(run_batch)

"""Thin Celery task shells: one batch task per event queue, each handing its batch to the process's runtime."""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery_batches import Batches

from events.topology import CONTROL_QUEUE, ROUTES
from schemas.settings import Settings

log = logging.getLogger("sfsync.worker")

#: housekeeping tasks run by beat on the control queue
RELEASE_PARKED = "sfsync.release_parked"
CRM_SYNC_CYCLE = "sfsync.crm_sync_cycle"
#: seconds between releases of parked work
RELEASE_INTERVAL = 15.0


def register(app: Celery, settings: Settings) -> None:
    """Register the batch tasks and housekeeping tasks on `app`, and beat's schedule."""
    for task_name, queue in ROUTES.values():
        _register_batch_task(app, settings, task_name, queue)

    @app.task(name=RELEASE_PARKED, queue=CONTROL_QUEUE, ignore_result=True, acks_late=True)
    def release_parked() -> int:
        from workers.parked import release_parked as release

        return release(app)

    @app.task(name=CRM_SYNC_CYCLE, queue=CONTROL_QUEUE, ignore_result=True, acks_late=True)
    def crm_sync_cycle() -> dict:
        from workers.crm import run_cycle
        from workers.process import runtime_of

        return run_cycle(runtime_of(app))

    app.conf.beat_schedule = {
        "release-parked-work": {"task": RELEASE_PARKED, "schedule": RELEASE_INTERVAL,
                                "options": {"queue": CONTROL_QUEUE, "expires": RELEASE_INTERVAL}},
        "crm-sync-cycle": {"task": CRM_SYNC_CYCLE, "schedule": settings.crm_sync_interval,
                           "options": {"queue": CONTROL_QUEUE, "expires": settings.crm_sync_interval}},
    }


def _register_batch_task(app: Celery, settings: Settings, task_name: str, queue: str) -> None:
    def run_batch(requests):
        # celery-batches acks the whole batch whatever happens, so this must never raise: the
        # runtime decides written / retry / parked / dead-letter for each event itself
        from workers.process import runtime_of

        runtime = runtime_of(app)
        try:
            runtime.process_batch(task_name, queue, requests)
        except Exception:
            log.exception("batch of %d on %s failed unexpectedly; its events are retried", len(requests), queue)
            try:
                runtime.settle_failed_batch(task_name, queue, requests)
            except Exception:
                log.exception("could not retry the failed batch; this process exits so that it comes back "
                              "after the visibility timeout")
                # only a process that dies leaves celery-batches' messages unacked for Redis to hand out again
                logging.shutdown()
                os._exit(70)

    run_batch.__name__ = task_name.replace(".", "_")
    app.task(base=Batches, name=task_name, flush_every=settings.batch_size,
             flush_interval=settings.flush_interval, acks_late=True, ignore_result=True)(run_batch)

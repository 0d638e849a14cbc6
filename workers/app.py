"""The Celery application: broker settings, queues, routes and beat schedule, built from Settings."""

from __future__ import annotations

import gc

from celery import Celery, signals

from schemas.settings import Settings, load_settings
from workers import consumer_guard, tasks
from workers.celery_config import celery_config
from workers.process import runtime_of
from workers.runtime import prewarm


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("sfsync", set_as_current=True)
    app.conf.update(celery_config(settings))
    app.sfsync_settings = settings  # type: ignore[attr-defined]  # sfsync's own attribute on its app
    tasks.register(app, settings)
    consumer_guard.install(app)

    @signals.worker_init.connect(weak=False, dispatch_uid="sfsync.entry_point")
    def _started_by_sfsync(**_):
        # `celery -A workers.app:app worker` would run without the mapping check, JSON logs,
        # metrics, health endpoints and Sentry that `sfsync worker` sets up first
        if not getattr(app, "started_by_sfsync", False):
            raise SystemExit("start sfsync workers with `sfsync worker` (it takes Celery's worker options, e.g. "
                             "`sfsync worker -E` for task events): it checks the mappings against Salesforce and "
                             "sets up logs, metrics, health endpoints and Sentry, which a bare `celery worker` "
                             "would run without")

    @signals.worker_process_init.connect(weak=False)
    def _prewarm(**_):
        _freeze_startup_objects()
        prewarm(runtime_of(app))

    @signals.worker_ready.connect(weak=False)
    def _consumer_ready(**_):
        _freeze_startup_objects()

    return app


def _freeze_startup_objects() -> None:
    """Leave what the process holds after start-up (modules, Celery, pydantic's schemas: about 100,000
    objects) out of the garbage collector's full passes: every event allocates dozens of objects, and
    each full pass walked all of those again, a quarter of the CPU of parsing an event and building its
    record. The process's own garbage is collected as before."""
    gc.freeze()


app = create_app()

"""The runtime of this worker process, built after fork and kept on the Celery app that owns it."""

from __future__ import annotations

import os
import threading
from typing import Any

from workers.messages import BatchItem
from workers.runtime import WorkerRuntime

_lock = threading.Lock()


def republisher(app):
    """Publish an event again, on its own queue, with its retry meta and a countdown."""
    def republish(item: BatchItem, countdown: float, meta: dict[str, Any]) -> None:
        app.send_task(item.task_name, args=[item.raw], kwargs={"sfsync": meta}, queue=item.queue,
                      exchange=item.queue, routing_key=item.queue, countdown=max(countdown, 0.0))
    return republish


def runtime_of(app) -> WorkerRuntime:
    """This process's runtime: built on first use after fork (connections must not cross processes)."""
    with _lock:
        held = getattr(app, "sfsync_runtime", None)
        if held is None or held[0] != os.getpid():
            held = (os.getpid(), WorkerRuntime.build(app.sfsync_settings, republisher(app)))
            app.sfsync_runtime = held
        return held[1]

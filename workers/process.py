"""The runtime of this worker process, built after fork and kept on the Celery app that owns it."""

from __future__ import annotations

import os
import threading

from workers.runtime import WorkerRuntime

_lock = threading.Lock()


def runtime_of(app) -> WorkerRuntime:
    """This process's runtime: built on first use after fork (connections must not cross processes)."""
    with _lock:
        held = getattr(app, "sfsync_runtime", None)
        if held is None or held[0] != os.getpid():
            held = (os.getpid(), WorkerRuntime.build(app.sfsync_settings))
            app.sfsync_runtime = held
        return held[1]

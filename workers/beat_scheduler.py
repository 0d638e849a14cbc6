"""Beat's scheduler: kept in memory, every entry due as beat starts, so a restart never delays a cycle."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery.beat import ScheduleEntry, Scheduler

from events.fleet import HEARTBEAT
from events.redis_conn import connect
from workers.heartbeat import Heartbeat


class DueAtStartEntry(ScheduleEntry):
    """A schedule entry that, created without a last run, counts as having last run one interval ago."""

    def __init__(self, *args, last_run_at=None, **kwargs):
        super().__init__(*args, last_run_at=last_run_at, **kwargs)
        if last_run_at is None:
            run_every = getattr(self.schedule, "run_every", None)
            if isinstance(run_every, timedelta):
                self.last_run_at = self.last_run_at - run_every


class DueAtStartScheduler(Scheduler):
    """Celery's in-memory scheduler (no schedule file, nothing written to disk) whose entries run
    once when beat starts, then every interval.

    A persistent schedule would only remember when each entry last ran; lost with the file (a new
    pod, a container without a volume) it makes the first CRM cycle wait a whole interval. Running
    both entries at start is harmless: a CRM cycle reads from its stored watermark, and releasing
    parked work releases only what is due."""

    Entry = DueAtStartEntry

    #: the fleet's heartbeat of this beat process (workers/heartbeat.py), made on the first tick
    heartbeat = None

    def tick(self, *args, **kwargs):
        """Beat's loop: run what is due, and beat in the fleet from the same loop (a hung loop stops beating)."""
        interval = super().tick(*args, **kwargs)
        try:
            if self.heartbeat is None:
                settings = self.app.sfsync_settings
                self.heartbeat = Heartbeat(connect(settings.redis_url.get_secret_value(), socket_timeout=5), "beat")
            if self.heartbeat.due():
                self.heartbeat.beat()
        except Exception:  # the schedule must run whatever the fleet's bookkeeping does
            logging.getLogger("sfsync.fleet").warning("beat's heartbeat failed", exc_info=True)

        return min(interval, HEARTBEAT)

    def close(self):
        if self.heartbeat is not None:
            self.heartbeat.leave()
        super().close()

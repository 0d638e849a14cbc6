"""This process's heartbeat in the fleet (events/fleet.py): a consumer timer in a worker, a thread in the console.

A worker beats from its consumer's event loop, so a worker whose loop hangs stops beating like
one that was killed; beat beats from its scheduler's tick (workers/beat_scheduler.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import bootsteps

from events.deadletter import sfsync_version
from events.fleet import HEARTBEAT, Fleet, own_id
from events.redis_conn import connect
from workers.consumer.dispatch import PoolShare
from workers.consumer.state import ConsumerState

log = logging.getLogger("sfsync.fleet")

#: seconds a workspace counts as served by a worker after its last message there
SERVED_WINDOW = 60.0


class Heartbeat:
    """Beats for one process: what it is, and (when given) how to read its batches in flight and workspaces."""

    def __init__(self, client: Any, kind: str, *, in_flight: Callable[[], int | None] | None = None,
                 concurrency: Callable[[], int | None] | None = None,
                 workspaces: Callable[[], list[str] | None] | None = None):
        self.fleet = Fleet(client)
        self.kind, self.id, self.started, self.version = kind, own_id(kind), time.time(), sfsync_version()
        self.in_flight, self.concurrency, self.workspaces = in_flight, concurrency, workspaces
        self.last = 0.0
        self._stop = threading.Event()

    def beat(self) -> None:
        """One beat; a Redis that does not answer is logged, never raised (the next beat tries again)."""
        try:
            self.fleet.beat(self.id, kind=self.kind, started=self.started, version=self.version,
                            in_flight=self.in_flight() if self.in_flight else None,
                            concurrency=self.concurrency() if self.concurrency else None,
                            workspaces=self.workspaces() if self.workspaces else None)
            self.last = time.monotonic()
        except Exception:
            log.warning("could not send this %s's heartbeat; trying again", self.kind, exc_info=True)

    def due(self) -> bool:
        return time.monotonic() - self.last >= HEARTBEAT

    def leave(self) -> None:
        self._stop.set()
        try:
            self.fleet.leave(self.id)
        except Exception:
            log.warning("could not say goodbye to the fleet", exc_info=True)

    def run_in_thread(self) -> threading.Thread:
        """Beat every HEARTBEAT seconds from a daemon thread until `leave` (the console's way)."""
        def loop() -> None:
            while not self._stop.is_set():
                self.beat()
                self._stop.wait(HEARTBEAT)

        thread = threading.Thread(target=loop, name=f"sfsync-{self.kind}-heartbeat", daemon=True)
        thread.start()
        return thread


def worker_in_flight(consumer: Any) -> int:
    """Batches this worker's pool is running now (the consumer's pool slots count them)."""
    share = getattr(consumer, PoolShare.ATTRIBUTE, None)
    return share.slots.in_flight if share is not None else 0


def worker_workspaces(consumer: Any) -> list[str]:
    """Workspaces whose messages this worker holds now or received within SERVED_WINDOW."""
    state = getattr(consumer, ConsumerState.ATTRIBUTE, None)
    if state is None:
        return []
    horizon = state.clock() - SERVED_WINDOW
    recent = {ws for ws, at in dict(state.floods.seen).items() if at >= horizon}
    return sorted(ws for ws in recent | set(dict(state.buffer.held)) if ws)


class FleetHeartbeat(bootsteps.StartStopStep):
    """A consumer step: the worker's heartbeat, on the consumer's timer (armed again at every consumer start)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    name = "sfsync.FleetHeartbeat"
    #: one heartbeat per worker process, kept across consumer restarts (same id, same start time)
    heartbeat: Heartbeat | None = None

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, parent: Any) -> None:
        if FleetHeartbeat.heartbeat is None:
            client = connect(parent.app.sfsync_settings.redis_url.get_secret_value(), socket_timeout=5)
            pool = parent.pool
            FleetHeartbeat.heartbeat = Heartbeat(
                client, "worker", in_flight=lambda: worker_in_flight(parent),
                workspaces=lambda: worker_workspaces(parent),
                concurrency=lambda: int(getattr(pool, "num_processes", 0) or 0) or None)
        FleetHeartbeat.heartbeat.beat()
        self.tref = parent.timer.call_repeatedly(HEARTBEAT, FleetHeartbeat.heartbeat.beat)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if FleetHeartbeat.heartbeat is not None:
            FleetHeartbeat.heartbeat.leave()

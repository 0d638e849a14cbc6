"""Thin Celery task shells: one batch task per event queue, each handing its batch to the process's runtime."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from typing import Any

import sentry_sdk
from celery import Celery, bootsteps

from events.deadletter import DeadLetterStore
from events.overflow import Overflow
from events.parking import ParkingLot, UsageGauge
from events.redis_conn import connect
from events.topology import CONTROL_QUEUE, ROUTES
from events.wire import WORKSPACE_HEADER
from schemas.settings import Settings
from workers import broker_guard
from workers.breaker_probe import probe_due
from workers.consumer.batches import QueuedMessage
from workers.consumer.dispatch import PoolShare
from workers.consumer.drains import claim_for
from workers.consumer.leases import LEASE_RENEWAL
from workers.consumer.state import ConsumerSetup
from workers.consumer.task import BatchTask
from workers.consumer_guard import unpack_queue_item
from workers.crm import run_cycle
from workers.heartbeat import FleetHeartbeat
from workers.linger import Lingers
from workers.observability import metrics
from workers.parked import release_parked as release_parked_work
from workers.parked import release_retries
from workers.process import runtime_of
from workers.sampler import BacklogSampler
from workers.status import oldest_unacked_seconds
from workspaces.directory import Directory

log = logging.getLogger("sfsync.worker")

#: housekeeping tasks run by beat on the control queue
RELEASE_PARKED = "sfsync.release_parked"
CRM_SYNC_CYCLE = "sfsync.crm_sync_cycle"
#: seconds between releases of parked work (beat) and of due retries (every worker)
RELEASE_INTERVAL = 15.0
RETRY_RELEASE_INTERVAL = 1.0
#: seconds a drain holds the chunk of an overflow it claimed before another drain may take it
DRAIN_LEASE = 120.0
#: seconds between looks for orgs whose breaker wants a probe
PROBE_TICK = 1.0


class EventBatchTask(BatchTask):
    """The batch task of one event queue: its body never raises; each event's fate is decided inside."""

    abstract = True

    def run_batch(self, messages: list[QueuedMessage], drain: str | None = None) -> int:
        """Sync one workspace's batch: its messages of every event queue, and when `drain` names the
        workspace a chunk of its overflow (up to a batch of events in all). The claim is forgotten
        only once it is settled: a process that dies leaves it to expire and be claimed again."""
        runtime = runtime_of(self.app)
        groups: dict[tuple[str, str], list[QueuedMessage]] = {}
        for message in messages:
            groups.setdefault(self._route(message.task, message.queue), []).append(message)
        claim = None
        wanted = claim_for(runtime.settings.batch_size, messages) if drain is not None else None
        if wanted is not None and drain is not None:  # wanted only when drain names the workspace
            overflow = Overflow(runtime.redis)
            try:
                token, entries = overflow.claim(drain, wanted[0], DRAIN_LEASE, at_least_one=wanted[1])
            except Exception:  # Redis restarting: the batch goes on; the overflow waits for the next drain
                log.warning("could not claim from the overflow of %s", drain, exc_info=True)
                token, entries = "", []
            claim = (overflow, token) if entries else None
            for entry in entries:
                task_name, queued = self._entry(runtime, entry)
                if queued is not None:
                    groups.setdefault(self._route(task_name, queued.queue or entry.get("queue")), []).append(queued)
        done = self._sync(runtime, [(task_name, queue, group) for (task_name, queue), group in groups.items()])
        if claim is not None:
            try:
                claim[0].finish(drain, claim[1])  # type: ignore[arg-type]  # a claim is made only for a drain
            except Exception:  # the claim expires and its entries are claimed again (the ledger absorbs them)
                log.warning("could not settle the claim on the overflow of %s", drain, exc_info=True)
        return done

    def _sync(self, runtime, groups: list[tuple[str, str, list[QueuedMessage]]]) -> int:
        """Every event ends decided; this never raises (a batch that cannot even be retried ends the process)."""
        if not groups:
            return 0
        try:
            return sum(runtime.pipeline.process_batch(groups).values())
        except Exception:
            log.exception("batch of %d message(s) failed unexpectedly; its events are retried",
                          sum(len(g) for _, _, g in groups))
            try:
                return sum(runtime.pipeline.settle_failed_batch(groups).values())
            except Exception:
                log.exception("could not retry the failed batch; this process exits and its batch goes "
                              "back on the queue")
                sentry_sdk.flush(timeout=2.0)  # os._exit skips the handlers that would send it
                logging.shutdown()
                os._exit(70)

    def _route(self, task_name: str, queue: str | None) -> tuple[str, str]:
        """(task, queue) a message is synced as; one for no event task is routed again by each event's own type."""
        if task_name not in self.app.tasks or not isinstance(self.app.tasks[task_name], EventBatchTask):
            return self.name, self.queue
        # queue: the event task's own, given by app.task(queue=...) in register()
        return task_name, str(queue or self.app.tasks[task_name].queue)  # type: ignore[attr-defined]

    def _entry(self, runtime, entry: dict[str, Any]) -> tuple[str, QueuedMessage | None]:
        """An overflow entry as the message it was: spilled by a consumer, or a queue item moved as it was."""
        if "raw" in entry:
            task_name, queued = self._unpack(runtime, str(entry["raw"]), entry.get("unreadable"))
            if task_name is None or queued is None:
                return "", None
            queued.queue = str((queued.delivery_info or {}).get("routing_key") or "")
            return task_name, queued
        task_name = str(entry.get("task") or self.name)
        headers = entry.get("headers")
        headers = dict(headers) if isinstance(headers, dict) else {}
        if "signature" in entry:
            return task_name, _signed_entry(entry, task_name, headers)
        return task_name, QueuedMessage(entry.get("id"), tuple(entry.get("args") or ()),
                                        dict(entry.get("kwargs") or {}), task=task_name,
                                        queue=str(entry.get("queue") or ""), headers=headers)

    def _unpack(self, runtime, raw: str, unreadable: str | None = None) -> tuple[str | None, QueuedMessage | None]:
        """A queue item moved to the overflow as it was; one no batch can use is dead-lettered here,
        with the code the read loop gives it (`unreadable`: why its bytes are not text)."""
        if unreadable is None:
            task_name, unpacked = unpack_queue_item(raw)
            if task_name is not None:  # with a task name comes a message (unpack_queue_item's contract)
                return task_name, unpacked  # type: ignore[return-value]
            assert isinstance(unpacked, broker_guard.Unreadable)  # what unpack_queue_item gives with no task
            why, body = unpacked, raw.encode("utf-8", "surrogatepass")
        else:
            why, body = broker_guard.Unreadable(broker_guard.INVALID_ENVELOPE, unreadable), \
                raw.encode("utf-8", "surrogateescape")
        # settled by the runtime's own settler: no Redis client or directory of its own per item
        runtime.settler().refuse([why.item(body, None)])
        return None, None


class WorkerTimers(bootsteps.StartStopStep):
    """Consumer timers, armed again at every consumer start: lease renewal and release of due retries."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    name = "sfsync.WorkerTimers"

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.trefs: list[Any] = []
        self.client = None

    def start(self, parent: Any) -> None:
        app = parent.app
        self.client = self.client or connect(app.sfsync_settings.redis_url.get_secret_value(), socket_timeout=5)
        # what a retry of a signing workspace is signed with when it goes back on its queue
        directory = Directory(app.sfsync_settings, self.client)
        self.trefs = [
            parent.timer.call_repeatedly(LEASE_RENEWAL, PoolShare.of(parent).holdings.renew, (self.client,)),
            parent.timer.call_repeatedly(RETRY_RELEASE_INTERVAL, _guarded(release_retries),
                                         (app, self.client, directory)),
            parent.timer.call_repeatedly(LEASE_RENEWAL, _guarded(report_backlog), (app, self.client)),
        ]
        start_prober(app, self.client)

    def stop(self, parent: Any) -> None:
        for tref in self.trefs:
            tref.cancel()
        self.trefs = []

    shutdown = stop


_prober: threading.Thread | None = None


def start_prober(app: Celery, client) -> None:
    """Once per worker process: a thread that probes orgs whose breaker is open (a probe may take
    seconds, which the consumer's own timers must never wait for)."""
    global _prober
    if _prober is not None and _prober.is_alive():
        return
    directory = Directory(app.sfsync_settings, client)  # type: ignore[attr-defined]  # sfsync's own attribute on its app

    def loop() -> None:
        while True:
            _guarded(probe_due)(app, client, directory)
            time.sleep(PROBE_TICK)

    _prober = threading.Thread(target=loop, name="sfsync-breaker-prober", daemon=True)
    _prober.start()


def report_backlog(app: Celery, client) -> None:
    """Gauges only Redis knows: the oldest unacknowledged message, parked work and dead letters
    (kept current here, since releases, replays and purges happen in other processes)."""
    metrics.set_oldest_unacked(oldest_unacked_seconds(client) or 0.0)
    lot = ParkingLot(client)
    for ws in set(lot.workspaces()) | {app.sfsync_settings.workspace_id}:  # type: ignore[attr-defined]  # sfsync's own attribute
        metrics.set_parked(lot.count(ws), ws)
    metrics.set_dead_letters(DeadLetterStore(client).count())


def _guarded(fn):
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a timer must survive a Redis restart; the next tick tries again
            log.warning("%s failed; trying again", fn.__name__, exc_info=True)
    return run


def register(app: Celery, settings: Settings) -> None:
    """Register the batch tasks, the housekeeping tasks, the consumer timers and beat's schedule."""
    for task_name, queue in ROUTES.values():
        app.task(base=EventBatchTask, name=task_name, queue=queue, flush_every=settings.batch_size,
                 flush_interval=settings.flush_interval, acks_late=True, ignore_result=True)(_never_called)
    app.steps["consumer"].add(WorkerTimers)
    app.steps["consumer"].add(FleetHeartbeat)
    app.steps["consumer"].add(BacklogSampler)
    setattr(app, ConsumerSetup.ATTRIBUTE, ConsumerSetup(lingers=_lingers(settings), overflow=lambda: _overflow(settings),
                                                        shutdown_grace=settings.shutdown_grace))

    @app.task(name=RELEASE_PARKED, queue=CONTROL_QUEUE, ignore_result=True, acks_late=True)
    def release_parked() -> int:
        return release_parked_work(app)

    @app.task(name=CRM_SYNC_CYCLE, queue=CONTROL_QUEUE, ignore_result=True, acks_late=True)
    def crm_sync_cycle(workspace_id: str | None = None) -> dict:
        """Beat's tick (no workspace) hands one cycle per connected workspace to the workers, so
        cycles of different workspaces run in parallel; each takes its workspace's lock."""
        runtime = runtime_of(app)
        if workspace_id is not None:
            return run_cycle(runtime, workspace_id)
        served = [ws for ws in runtime.directory.ids()
                  if (config := runtime.directory.get(ws)) is not None and config.salesforce_public is not None]
        for ws in served:
            # args as a list: Celery takes one as well as a tuple (the stubs say tuple), and shows it as sent
            crm_sync_cycle.apply_async(args=[ws], queue=CONTROL_QUEUE, exchange="", routing_key=CONTROL_QUEUE,  # type: ignore[arg-type]
                                       expires=settings.crm_sync_interval, headers={WORKSPACE_HEADER: ws})
        return {"scheduled": len(served)}

    app.conf.beat_schedule = {
        "release-parked-work": {"task": RELEASE_PARKED, "schedule": RELEASE_INTERVAL,
                                "options": {"queue": CONTROL_QUEUE, "expires": RELEASE_INTERVAL}},
        "crm-sync-cycle": {"task": CRM_SYNC_CYCLE, "schedule": settings.crm_sync_interval,
                           "options": {"queue": CONTROL_QUEUE, "expires": settings.crm_sync_interval}},
    }
    # in memory, each entry due as beat starts: no schedule file to keep (workers/beat_scheduler.py)
    app.conf.beat_scheduler = "workers.beat_scheduler:DueAtStartScheduler"


def _overflow(settings: Settings):
    return Overflow(connect(settings.redis_url.get_secret_value(), socket_timeout=5))


def _lingers(settings: Settings):
    """Per-workspace lingers, built on first use in the consumer (after fork; the Redis client is lazy)."""
    built: list = []

    def lingers(workspace_id: str) -> float:
        if not built:
            client = connect(settings.redis_url.get_secret_value(), socket_timeout=5)
            built.append(Lingers(Directory(settings, client), UsageGauge(client), settings.flush_interval))
        return built[0](workspace_id)

    return lingers


def _signed_entry(entry: dict[str, Any], task_name: str, headers: dict[str, Any]) -> QueuedMessage:
    """A signed message from an overflow: its arguments read from the body its signature covers."""
    try:
        body = base64.b64decode(str(entry.get("body") or ""), validate=True)
        args, kwargs, _ = json.loads(body)
        args, kwargs = tuple(args), dict(kwargs)
    except (ValueError, TypeError):  # not what sfsync wrote: its check refuses it (no args, no event)
        body, args, kwargs = b"", (), {}
    return QueuedMessage(entry.get("id"), args, kwargs, task=task_name, queue=str(entry.get("queue") or ""),
                         headers=headers, signature=str(entry.get("signature")), body=body)


def _never_called(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("event tasks run in batches through the consumer; they are never called one by one")

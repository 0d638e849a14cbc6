"""Per-process wiring between Celery batches and the sync domain: parse, dedupe, sync, settle."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from events.contact_index import ContactIndex, CreationLocks
from events.ledger import Ledger
from events.redis_conn import connect
from schemas.settings import Settings
from workers.delivery import Delivery
from workers.messages import BatchItem, _bundle, _item, _items  # noqa: F401
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.engine import SyncContext, sync_batch
from workers.sync.mappings import load_mappings, usable_mappings, validate_mappings
from workers.sync.outcomes import SKIPPED_DUPLICATE_DELIVERY, Outcome, Retry, Skipped, Written

log = logging.getLogger("sfsync.worker")


@dataclass
class Runtime:
    settings: Settings
    context: SyncContext | None
    delivery: Delivery
    login_error: SalesforceError | None = None


#: deaths of a worker while syncing a message (in a small group, then alone) that make it a culprit
CULPRIT_STRIKES = 2
#: redelivered messages synced together; a group that dies is retried one message at a time
REDELIVERED_GROUP = 25

_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime(app) -> Runtime:
    """Build this process's runtime once (after fork: connections must not cross processes)."""
    global _runtime
    with _lock:
        if _runtime is None or _runtime.context is None:
            _runtime = build_runtime(app.sfsync_settings, app)
        return _runtime


def build_runtime(settings: Settings, app) -> Runtime:
    client = connect(settings.redis_url.get_secret_value())
    delivery = Delivery(client, settings, app)
    gateway: SalesforceGateway | None = None
    try:
        gateway = SalesforceGateway.from_settings(settings)
        # describe calls: during an outage they fail too, and must become retries, not a lost batch
        mappings, mapping_errors = _usable_mappings(settings, gateway)
    except SalesforceError as error:
        log.error("cannot reach Salesforce: %s", error)
        if gateway is not None and gateway.usage is not None:  # a spent quota says so in its header
            delivery.note_usage(gateway.usage.used, gateway.usage.limit)
        return Runtime(settings, None, delivery, login_error=error)
    context = SyncContext(
        gateway=gateway,
        mappings=mappings,
        workspace_id=settings.workspace_id,
        ledger=Ledger(client),
        index=ContactIndex(client, miss_ttl=int(min(settings.crm_sync_interval, 900))),
        locks=CreationLocks(client),
        writeback_enabled=settings.email_message_writeback,
        mapping_errors=tuple(mapping_errors),
    )
    return Runtime(settings, context, delivery)


def _usable_mappings(settings: Settings, gateway: SalesforceGateway):
    """The configured mappings less the optional ones this org lacks (each logged once), and the errors.

    Errors are kept on purpose: a worker only runs with them when its start-up check was
    skipped or the org changed since, and then the affected events must fail visibly into
    the dead-letter store (to be replayed once the mapping is fixed), not lose a field quietly.
    """
    config = load_mappings(settings.mappings)
    problems = validate_mappings(config, gateway.describe)
    for problem in problems:
        if problem.severity == "error":
            log.error("field mapping does not fit this org; affected writes will fail: %s", problem)
        else:
            log.warning("field mapping left out: %s", problem)
    errors = [p for p in problems if p.severity == "error"]
    return usable_mappings(config, [p for p in problems if p.severity != "error"]), errors


def prewarm(app) -> None:
    """Log in and read describe when a pool process starts, so its first batch does not wait for it.

    In a thread: Celery gives a new pool process only seconds to report up, and a login during
    a Salesforce outage takes longer. A batch arriving meanwhile waits on the runtime lock.
    """
    def build() -> None:
        try:
            get_runtime(app)
        except Exception:  # the first batch tries again and settles what fails
            log.exception("could not prepare this worker process; its first batch will try again")

    threading.Thread(target=build, name="sfsync-prewarm", daemon=True).start()


def reset_runtime() -> None:
    global _runtime
    with _lock:
        _runtime = None


def process_batch(app, task_name: str, queue: str, requests: list[Any]) -> Counter:
    """Sync one celery-batches batch; every message ends written, skipped, retried or dead-lettered."""
    try:
        runtime = get_runtime(app)
        items = [it for r in requests for it in _items(r, task_name, queue)]
        return _process(runtime, items)
    except Exception:  # never let celery-batches ack a batch we did not settle: log loudly, requeue
        log.exception("batch of %d on %s failed unexpectedly; messages are requeued", len(requests), queue)
        try:
            runtime = get_runtime(app)
            runtime.delivery.requeue_all([it for r in requests for it in _items(r, task_name, queue)])
        except Exception:
            log.exception("could not requeue the failed batch; this process exits so that it comes back "
                          "after the visibility timeout")
            # celery-batches acks a batch whether its function returns or raises; only a process
            # that dies leaves the messages unacked for Redis to hand out again
            logging.shutdown()
            os._exit(70)
        return Counter()


def _process(runtime: Runtime, items: list[BatchItem]) -> Counter:
    delivery = runtime.delivery
    # counted before anything else can fail: a message whose batches keep dying must not loop forever
    delivered = delivery.count_deliveries(items)
    early: list[tuple[BatchItem, Outcome | None]] = []
    fresh: list[BatchItem] = []
    again: list[BatchItem] = []
    suspects: list[BatchItem] = []
    for it, times in zip(items, delivered):
        strikes = delivery.strikes(it) if times > 1 else 0
        if strikes >= CULPRIT_STRIKES:
            early.append((it, delivery.culprit(strikes)))
        elif times > runtime.settings.max_deliveries:
            early.append((it, delivery.poison(times)))
        elif strikes:
            suspects.append(it)
        elif times > 1:
            again.append(it)
        else:
            fresh.append(it)
    counts = _sync_and_settle(runtime, fresh, early)
    # Messages back after their worker died are synced in small marked groups, and a member of a
    # group that died is synced alone: a message that kills the process again is then named by
    # its marks and dead-lettered on its own, instead of taking its neighbours down with it.
    # The ledger keeps all of this exactly-once.
    for start in range(0, len(again), REDELIVERED_GROUP):
        group = again[start:start + REDELIVERED_GROUP]
        with delivery.marked(group):
            counts += _sync_and_settle(runtime, group, [])
    for it in suspects:
        with delivery.marked([it]):
            counts += _sync_and_settle(runtime, [it], [])
    delivery.finished(items)
    return counts


def _sync_and_settle(runtime: Runtime, items: list[BatchItem],
                     early: list[tuple[BatchItem, Outcome | None]]) -> Counter:
    size = runtime.settings.batch_size
    if len(items) > size:
        # a batch of bundles carries more events than one sync should hold in memory at once
        counts = _sync_and_settle(runtime, items[:size], early)
        for start in range(size, len(items), size):
            counts += _sync_and_settle(runtime, items[start:start + size], [])
        return counts
    valid = [it for it in items if it.event is not None]
    # the same event delivered twice in one batch is synced once
    first: dict[tuple[str, str], int] = {}
    unique: list[BatchItem] = []
    for it in valid:
        k = (it.event.workspace_id, it.event.id)
        if k not in first:
            first[k] = len(unique)
            unique.append(it)
    if not unique:
        outcomes: list[Outcome] = []
    elif runtime.delivery.over_ceiling():
        # the governor: park instead of spending the org's last API calls (released as usage falls)
        outcomes = [runtime.delivery.governor_retry()] * len(unique)
    elif runtime.context is None:
        error = runtime.login_error or SalesforceError("LOGIN_FAILED", "not connected")
        outcomes = [Retry(error) for _ in unique]
        reset_runtime()  # log in again on the next batch
    else:
        outcomes = sync_batch([it.event for it in unique], runtime.context)
        usage = runtime.context.gateway.usage
        if usage is not None:
            runtime.delivery.note_usage(usage.used, usage.limit)
    by_key = {k: outcomes[pos] for k, pos in first.items()}
    settled: list[tuple[BatchItem, Outcome | None]] = list(early)
    seen: set[tuple[str, str]] = set()
    for it in items:
        if it.event is None:
            settled.append((it, None))
            continue
        k = (it.event.workspace_id, it.event.id)
        outcome = by_key[k]
        if k in seen:
            # a second copy of an event in the same batch: its first copy carries the outcome
            outcome = (Written(outcome.sobject, outcome.record_id, outcome.contact_id, duplicate=True)
                       if isinstance(outcome, Written) else Skipped(SKIPPED_DUPLICATE_DELIVERY))
        seen.add(k)
        settled.append((it, outcome))
    return runtime.delivery.settle(settled)

"""A worker process's runtime, built explicitly once after fork: Redis, the org connection, and the batch pipeline."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from events.contact_index import ContactIndex, CreationLocks
from events.ledger import Ledger
from events.connection_state import ConnectionState
from events.parking import UsageGauge
from events.redis_conn import connect
from schemas.settings import Settings, with_fresh_secrets
from workers.decide import SESSION_CODES, Clock, History, RetryPolicy, decide, poisoned
from workers.observability import metrics
from workers.governor import Governor
from workers.messages import BatchItem, _items
from workers.redelivery import Redeliveries, first_failure_at
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.settle import Settler
from workers.sync.engine import SyncContext, sync_batch
from workers.sync.mappings import errors_and_warnings, load_mappings, usable_mappings, validate_mappings
from workers.sync.outcomes import SKIPPED_DUPLICATE_DELIVERY, DeadLetter, Outcome, Retry, Skipped, Written

log = logging.getLogger("sfsync.worker")

#: redelivered messages synced together; a group that dies is retried one message at a time
REDELIVERED_GROUP = 25


class OrgConnection:
    """The org's gateway and sync context, logged in lazily, and again by the next batch after a
    failed login (its events are retried or parked meanwhile, so this cannot hammer Salesforce)."""

    def __init__(self, settings: Settings, client: redis.Redis, governor: Governor):
        self.settings = settings
        self.redis = client
        self.governor = governor
        self.state = ConnectionState(client)
        self._connected: bool | None = None
        self._context: SyncContext | None = None
        self._lock = threading.Lock()

    def context(self) -> SyncContext:
        with self._lock:
            if self._context is not None:
                return self._context
            try:
                self._context = self._connect()
            except SalesforceError as error:
                if error.code in SESSION_CODES:
                    self.lost(error)
                raise
            self.connected()
            return self._context

    def forget(self) -> None:
        """Log in again on the next batch (the session was refused)."""
        with self._lock:
            self._context = None

    @property
    def can_renew(self) -> bool:
        """Username-password and JWT logins can get a new session; a bare access token cannot."""
        return self.settings.salesforce_auth in ("password", "jwt")

    def lost(self, error: SalesforceError) -> None:
        """The org refuses the credentials held: say so (status, /readyz, metric) until a login works."""
        self.state.mark_lost(self.settings.workspace_id, error.code, error.message)
        metrics.set_connected(False)
        self._connected = False
        log.error("Salesforce connection lost; events wait parked until it works again: %s", error)

    def connected(self) -> None:
        if self._connected is not True:
            self.state.mark_connected(self.settings.workspace_id)
            metrics.set_connected(True)
            self._connected = True

    def _connect(self) -> SyncContext:
        self.settings = with_fresh_secrets(self.settings)
        gateway = SalesforceGateway.from_settings(self.settings)
        try:
            mappings, errors = usable_mappings_for(self.settings, gateway)
        except SalesforceError:
            if gateway.usage is not None:  # a spent quota says so in its header
                self.governor.note(gateway.usage.used, gateway.usage.limit)
            raise
        return SyncContext(
            gateway=gateway, mappings=mappings, workspace_id=self.settings.workspace_id,
            ledger=Ledger(self.redis),
            index=ContactIndex(self.redis, miss_ttl=int(min(self.settings.crm_sync_interval, 900))),
            locks=CreationLocks(self.redis), writeback_enabled=self.settings.email_message_writeback,
            mapping_errors=tuple(errors))


def usable_mappings_for(settings: Settings, gateway: SalesforceGateway):
    """The configured mappings less the optional ones this org lacks (each logged), and the errors.

    Errors are kept on purpose: a worker only runs with them when its start-up check was
    skipped or the org changed since, and then the affected events must fail visibly into
    the dead-letter store (to be replayed once the mapping is fixed), not lose a field quietly.
    """
    config = load_mappings(settings.mappings)
    errors, warnings = errors_and_warnings(validate_mappings(config, gateway.describe))
    for problem in errors:
        log.error("field mapping does not fit this org; affected writes will fail: %s", problem)
    for problem in warnings:
        log.warning("field mapping left out: %s", problem)
    return usable_mappings(config, warnings), errors


@dataclass
class WorkerRuntime:
    """Everything one worker process needs to sync batches; passed explicitly to what uses it."""

    settings: Settings
    redis: redis.Redis
    connection: OrgConnection
    governor: Governor
    redeliveries: Redeliveries
    settler: Settler
    policy: RetryPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy.from_settings(self.settings)

    @classmethod
    def build(cls, settings: Settings) -> "WorkerRuntime":
        client = connect(settings.redis_url.get_secret_value())
        ws = settings.workspace_id
        governor = Governor(UsageGauge(client), ws, settings.api_usage_ceiling)
        return cls(settings=settings, redis=client, connection=OrgConnection(settings, client, governor),
                   governor=governor,
                   redeliveries=Redeliveries(client, ws, max_deliveries=settings.max_deliveries,
                                             visibility_timeout=settings.visibility_timeout),
                   settler=Settler(client, ws))

    # --- one batch ------------------------------------------------------------------------
    def process_batch(self, task_name: str, queue: str, requests: list[Any]) -> Counter:
        """Sync one batch; every event ends written, skipped, retried, parked or dead-lettered."""
        items = [it for r in requests for it in _items(r, task_name, queue)]
        histories = self.redeliveries.histories(items)
        counts = Counter()
        fresh, again, alone = self._triage(items, histories, counts)
        counts += self.sync_and_settle(fresh)
        # Messages back after their worker died are synced in small marked groups, and a member of
        # a group that died is synced alone: a message that kills the process again is then named
        # by its marks and dead-lettered on its own instead of taking its neighbours with it.
        for group in _groups(again, REDELIVERED_GROUP) + [[pair] for pair in alone]:
            with self.redeliveries.marked([it for it, _ in group]):
                counts += self.sync_and_settle(group)
        self.redeliveries.finished(items)
        return counts

    def _triage(self, items: list[BatchItem], histories: list[History], counts: Counter):
        """Poison is buried at once; the rest is split into fresh, redelivered and suspect events."""
        fresh, again, alone, buried = [], [], [], []
        for item, history in zip(items, histories):
            poison = poisoned(history, self.policy)
            if poison is not None:
                buried.append((item, DeadLetter(poison.code, poison.message), poison))
            elif history.strikes:
                alone.append((item, history))
            elif history.deliveries > 1:
                again.append((item, history))
            else:
                fresh.append((item, history))
        counts += self.settler.settle(buried)
        return fresh, again, alone

    def settle_failed_batch(self, task_name: str, queue: str, requests: list[Any]) -> Counter:
        """A batch that failed unexpectedly: each event is retried, spending an attempt."""
        items = [it for r in requests for it in _items(r, task_name, queue)]
        error = SalesforceError("INTERNAL_ERROR", "the batch failed unexpectedly (see the worker log)")
        clock = Clock(time.time())
        return self.settler.settle([
            (it, Retry(error), decide(Retry(error), History(attempt=it.attempt, first_failure_at=first_failure_at(it)),
                                      self.policy, clock)) for it in items])

    def sync_and_settle(self, pairs: list[tuple[BatchItem, History]]) -> Counter:
        """Sync events (at most a batch at a time), decide each one's fate and carry it out."""
        counts = Counter()
        for chunk in _groups(pairs, self.settings.batch_size):
            outcomes = self.outcomes_of([it for it, _ in chunk])
            clock = Clock(time.time())
            counts += self.settler.settle([(it, outcome, decide(outcome, history, self.policy, clock))
                                           for (it, history), outcome in zip(chunk, outcomes)])
        return counts

    def outcomes_of(self, items: list[BatchItem]) -> list[Outcome]:
        """One outcome per item: invalid events refused, copies of one event synced once."""
        unique, position = _unique_events(items)
        synced = self._sync_unique([items[i].event for i in unique])
        outcomes: list[Outcome] = []
        for n, item in enumerate(items):
            if item.event is None:
                outcomes.append(DeadLetter(item.problem.code, item.problem.reason))
                continue
            first = position[n]
            outcomes.append(synced[first] if unique[first] == n else _copy_of(synced[first]))
        return outcomes

    def _sync_unique(self, events: list) -> list[Outcome]:
        if not events:
            return []
        if self.governor.over_ceiling():
            # park instead of spending the org's last API calls (released as usage falls)
            return [self.governor.refusal()] * len(events)
        try:
            context = self.connection.context()
        except SalesforceError as error:
            return [Retry(error) for _ in events]
        outcomes = sync_batch(events, context)
        if _session_refused(outcomes):
            outcomes, context = self._after_session_refused(events, outcomes, context)
        usage = context.gateway.usage
        if usage is not None:
            self.governor.note(usage.used, usage.limit)
        return outcomes


    def _after_session_refused(self, events: list, outcomes: list[Outcome], context: SyncContext):
        """Log in again once and sync again (the ledger keeps it exactly-once); a session that
        cannot be renewed leaves the events parked by their INVALID_SESSION_ID outcome."""
        connection = self.connection
        connection.forget()
        refused = next(o.error for o in outcomes if isinstance(o, Retry) and o.error.code in SESSION_CODES)
        if connection.can_renew:
            try:
                renewed = connection.context()
            except SalesforceError as error:
                return [Retry(error) for _ in events], context
            outcomes = sync_batch(events, renewed)
            if not _session_refused(outcomes):
                return outcomes, renewed
        connection.lost(refused)
        return outcomes, context


def _session_refused(outcomes: list[Outcome]) -> bool:
    return any(isinstance(o, Retry) and o.error.code == "INVALID_SESSION_ID" for o in outcomes)


def _groups(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _unique_events(items: list[BatchItem]) -> tuple[list[int], dict[int, int]]:
    """Indexes of the first copy of each (workspace, event id), and each item's index into that list."""
    first: dict[tuple[str, str], int] = {}
    unique: list[int] = []
    position: dict[int, int] = {}
    for n, item in enumerate(items):
        if item.event is None:
            continue
        k = (item.event.workspace_id, item.event.id)
        if k not in first:
            first[k] = len(unique)
            unique.append(n)
        position[n] = first[k]
    return unique, position


def _copy_of(outcome: Outcome) -> Outcome:
    """A second copy of an event in the same batch: its first copy carries the outcome."""
    if isinstance(outcome, Written):
        return Written(outcome.sobject, outcome.record_id, outcome.contact_id, duplicate=True)
    return Skipped(SKIPPED_DUPLICATE_DELIVERY)


def prewarm(runtime: WorkerRuntime) -> None:
    """Log in and read describe when a pool process starts, so its first batch does not wait for it.

    In a thread: Celery gives a new pool process only seconds to report up, and a login during
    a Salesforce outage takes longer. A batch arriving meanwhile waits on the connection's lock.
    """
    def build() -> None:
        try:
            runtime.connection.context()
        except SalesforceError as error:
            log.error("cannot reach Salesforce: %s", error)
        except Exception:  # the first batch tries again and settles what fails
            log.exception("could not prepare this worker process; its first batch will try again")

    threading.Thread(target=build, name="sfsync-prewarm", daemon=True).start()

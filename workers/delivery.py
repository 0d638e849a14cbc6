"""Acting on outcomes: log what was written or skipped, retry, park long waits, dead-letter what cannot be written."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import redis

from events.deadletter import DeadLetterStore, raw_for_storage
from events.keys import key
from events.outcome_log import OutcomeLog
from events.parking import ParkedMessage, ParkingLot, UsageGauge, due_at
from events.redis_conn import connect
from schemas.settings import Settings
from workers.backoff import max_countdown, retry_delay
from workers.consumer_guard import MAX_MESSAGE_BYTES, SfsyncConsumer, _message_ids, check_message, install  # noqa: F401
from workers.messages import BatchItem
from workers.observability import metrics
from workers.salesforce.errors import SalesforceError
from workers.sync.engine import CONTACT_BEING_CREATED
from workers.sync.outcomes import DeadLetter, Outcome, Retry, Skipped, Written

log = logging.getLogger("sfsync.delivery")

#: the governor's verdict: usage of the daily API allowance is at or above Settings.api_usage_ceiling
API_USAGE_CEILING = "API_USAGE_CEILING"
#: a message delivered more than Settings.max_deliveries times without its batch finishing
POISON_MESSAGE = "POISON_MESSAGE"
#: seconds between `limits/` calls made to learn whether parked work may go (each costs an API call)
USAGE_RECHECK = 60.0


class Delivery:
    def __init__(self, client: redis.Redis, settings: Settings, app):
        self.redis = client
        self.settings = settings
        self.app = app
        self.dead_letters = DeadLetterStore(client)
        self.outcome_log = OutcomeLog(client)
        self.parking = ParkingLot(client)
        self.gauge = UsageGauge(client)

    # --- before a batch: delivery cap and API governor ------------------------------------
    def _delivery_key(self, task_id: str) -> str:
        return key(self.settings.workspace_id, "deliveries", task_id)

    def count_deliveries(self, items: list[BatchItem]) -> list[int]:
        """Count this delivery of each message (by Celery task id); the count survives a killed worker.

        The TTL outlives the redeliveries it must count: each comes one visibility timeout
        (plus a restore sweep) after the previous one.
        """
        ttl = int((self.settings.max_deliveries + 2) * (self.settings.visibility_timeout + 300))
        pipe = self.redis.pipeline(transaction=False)
        # once per message: the events of a bundle share their message's deliveries
        counted = list(dict.fromkeys(it.task_id for it in items if it.task_id))
        for task_id in counted:
            pipe.incr(self._delivery_key(task_id))
            pipe.expire(self._delivery_key(task_id), ttl)
        values = pipe.execute() if counted else []
        by_id = {task_id: int(values[2 * n]) for n, task_id in enumerate(counted)}
        return [by_id.get(it.task_id, 1) for it in items]

    def finished(self, items: list[BatchItem]) -> None:
        """The batch settled every message: its delivery counters are no longer needed."""
        ids = {self._delivery_key(it.task_id) for it in items if it.task_id}
        if ids:
            self.redis.delete(*ids)

    def _mark_key(self, task_id: str) -> str:
        return key(self.settings.workspace_id, "marked", task_id)

    def strikes(self, item: BatchItem) -> int:
        """How many times a worker died while this message was being synced after a redelivery."""
        return int(self.redis.get(self._mark_key(item.key)) or 0) if item.key else 0

    @contextmanager
    def marked(self, items: list[BatchItem]) -> Iterator[None]:
        """Mark messages while they are synced; the marks outlive the process if it dies meanwhile."""
        names = [self._mark_key(it.key) for it in items if it.key]
        if names:
            ttl = int((self.settings.max_deliveries + 2) * (self.settings.visibility_timeout + 300))
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.incr(name)
                pipe.expire(name, ttl)
            pipe.execute()
        yield
        if names:
            self.redis.delete(*names)

    def poison(self, delivered: int) -> DeadLetter:
        return DeadLetter(POISON_MESSAGE, f"delivered {delivered} times without its batch finishing (the worker "
                                          f"died or was killed each time); limit SFSYNC_MAX_DELIVERIES="
                                          f"{self.settings.max_deliveries}")

    def culprit(self, strikes: int) -> DeadLetter:
        return DeadLetter(POISON_MESSAGE, f"the worker died {strikes} times while syncing this message, the "
                                          f"last time on its own (its batch neighbours were synced apart from it)")

    def over_ceiling(self) -> bool:
        """The governor: keep the org's last API calls for its own users."""
        return self.gauge.over(self.settings.workspace_id, self.settings.api_usage_ceiling)

    def governor_retry(self) -> Retry:
        reading = self.gauge.read(self.settings.workspace_id)
        shown = f"{reading.used}/{reading.limit}" if reading else "unknown"
        return Retry(SalesforceError(API_USAGE_CEILING, f"daily API usage {shown} is at or above "
                                                        f"SFSYNC_API_USAGE_CEILING={self.settings.api_usage_ceiling}"))

    def note_usage(self, used: int, limit: int) -> None:
        self.gauge.store(self.settings.workspace_id, used, limit)
        metrics.set_api_usage(used, limit)

    # --- the one place outcomes are acted on ----------------------------------------------
    def settle(self, settled: list[tuple[BatchItem, Outcome | None]]) -> Counter:
        counts: Counter = Counter()
        history: dict[str, list[dict[str, Any]]] = {}
        for item, outcome in settled:
            label = self._settle_one(item, outcome)
            counts[label] += 1
            ids = item.ids()
            metrics.record_outcome(ids.get("event_type") or "unknown", label)
            entry = {**ids, "outcome": label}
            if isinstance(outcome, Written):
                entry.update(sobject=outcome.sobject, record_id=outcome.record_id, contact_id=outcome.contact_id,
                             contact_created=int(outcome.contact_created))
            elif isinstance(outcome, (Retry, DeadLetter)):
                entry["error_code"] = outcome.error.code if isinstance(outcome, Retry) else outcome.code
            elif isinstance(outcome, Skipped):
                entry["reason"] = outcome.reason
            elif outcome is None and item.problem is not None:
                entry["error_code"] = item.problem.code
            history.setdefault(ids.get("workspace_id") or "_unknown", []).append(entry)
        for workspace_id, entries in history.items():
            self.outcome_log.record(workspace_id, entries)
        if counts.get("dead_lettered"):
            metrics.set_dead_letters(self.dead_letters.count())
        return counts

    def _settle_one(self, item: BatchItem, outcome: Outcome | None) -> str:
        """Act on one outcome; returns its label (written, duplicate, skipped_*, retried, parked, dead_lettered)."""
        ids = item.ids()
        if outcome is None:
            problem = item.problem
            self._dead_letter(item, problem.code, problem.reason, (), attempts=1)
            return "dead_lettered"
        if isinstance(outcome, Written):
            label = "duplicate" if outcome.duplicate else "written"
            log.info("event %s", label, extra={**ids, "outcome": label, "sobject": outcome.sobject,
                                               "record_id": outcome.record_id})
            for warning in outcome.warnings:
                log.warning("event written with a field left out: %s", warning, extra={**ids, "outcome": "warning"})
            return label
        if isinstance(outcome, Skipped):
            label = f"skipped_{outcome.reason}"
            log.info("event skipped: %s", outcome.reason, extra={**ids, "outcome": label})
            return label
        if isinstance(outcome, Retry):
            return self._retry(item, outcome)
        self._dead_letter(item, outcome.code, outcome.message, outcome.fields, attempts=item.attempt + 1)
        return "dead_lettered"

    def _retry(self, item: BatchItem, outcome: Retry) -> str:
        error = outcome.error
        ceiling = max_countdown(self.settings.visibility_timeout)
        # waits of hours (a spent daily quota), the governor's pause, and any wait longer than a
        # countdown message may sit unacked are parked in Redis; they spend no attempt
        if error.daily_limit or error.code == API_USAGE_CEILING:
            return self._park(item, error, self.settings.park_interval)
        if outcome.after is not None and outcome.after > ceiling:
            return self._park(item, error, outcome.after)
        # waiting for another worker's contact creation is not a failure: it spends no attempt
        # (the creation lock expires within a minute if its holder dies, so this cannot loop)
        attempt = item.attempt + (0 if error.code == CONTACT_BEING_CREATED else 1)
        if attempt >= self.settings.max_attempts:
            self._dead_letter(item, error.code, f"gave up after {attempt} attempts: {error.message}",
                              error.fields, attempts=attempt)
            return "dead_lettered"
        delay = outcome.after if outcome.after is not None else retry_delay(
            attempt, base=self.settings.retry_backoff, cap=self.settings.retry_backoff_max,
            visibility_timeout=self.settings.visibility_timeout)
        self.republish(item, countdown=delay, attempt=attempt, last_error=error.code)
        metrics.record_retry(error.code)
        log.info("event will be retried in %.1fs after %s", delay, error.code,
                 extra={**item.ids(), "outcome": "retried", "error_code": error.code, "attempt": attempt})
        return "retried"

    def _park(self, item: BatchItem, error: SalesforceError, wait: float) -> str:
        meta = dict(item.meta)
        meta.update(last_error=error.code, parked=int(meta.get("parked", 0) or 0) + 1)
        meta.setdefault("first_failure_at", datetime.now(timezone.utc).isoformat())
        now = time.time()
        self.parking.park(self.settings.workspace_id,
                          [ParkedMessage(item.task_name, item.queue, item.raw, meta, error.code, now)],
                          due_at(now, wait))
        metrics.set_parked(self.parking.count(self.settings.workspace_id))
        log.warning("event parked for %.0fs after %s", wait, error.code,
                    extra={**item.ids(), "outcome": "parked", "error_code": error.code})
        return "parked"

    def republish(self, item: BatchItem, *, countdown: float, attempt: int, last_error: str) -> None:
        meta = dict(item.meta)
        meta.update(attempt=attempt, last_error=last_error)
        meta.setdefault("first_failure_at", datetime.now(timezone.utc).isoformat())
        self.app.send_task(item.task_name, args=[item.raw], kwargs={"sfsync": meta}, queue=item.queue,
                           exchange=item.queue, routing_key=item.queue, countdown=max(countdown, 0.0))

    def requeue_all(self, items: list[BatchItem]) -> None:
        """An unexpected failure of a whole batch: each message is retried, spending an attempt."""
        error = SalesforceError("INTERNAL_ERROR", "the batch failed unexpectedly (see the worker log)")
        for item in items:
            self._retry(item, Retry(error))

    def _dead_letter(self, item: BatchItem, code: str, message: str, fields, *, attempts: int) -> None:
        ids = item.ids()
        first = item.meta.get("first_failure_at")
        try:
            first_at = datetime.fromisoformat(first) if first else None
        except (TypeError, ValueError):
            first_at = None
        raw, truncated = raw_for_storage(item.raw)
        record = self.dead_letters.add(
            event=raw, error_code=code, error_message=message, error_fields=fields,
            attempts=attempts, first_failure_at=first_at, task_name=item.task_name, queue=item.queue,
            task_id=item.task_id, truncated=truncated, **ids)
        log.warning("event dead-lettered: %s", code,
                    extra={**ids, "outcome": "dead_lettered", "error_code": code, "dead_letter_id": record.id})


# --- parked work -----------------------------------------------------------------------------

def _recheck_usage(settings: Settings, gauge: UsageGauge) -> None:
    """Ask Salesforce's cheap `limits/` resource for the real usage, and store it for every worker."""
    from workers.salesforce.gateway import SalesforceGateway

    try:
        gateway = SalesforceGateway.from_settings(settings)
        limits = gateway.limits()
    except SalesforceError as error:
        log.warning("could not re-check Salesforce API usage: %s", error)
        return
    daily = (limits or {}).get("DailyApiRequests") or {}
    if "Max" in daily and "Remaining" in daily:
        gauge.store(settings.workspace_id, int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))
    elif gateway.usage is not None:
        gauge.store(settings.workspace_id, gateway.usage.used, gateway.usage.limit)


def release_parked(app, *, now: float | None = None, recheck_after: float = USAGE_RECHECK) -> int:
    """Beat task: put parked work whose time has come back on its queue; returns how many.

    Nothing is released while API usage is at or above the ceiling. Each message is republished
    before its parking entry is removed: a crash in between doubles it (the ledger absorbs
    that), it never loses it.
    """
    settings: Settings = app.sfsync_settings
    ws = settings.workspace_id
    client = connect(settings.redis_url.get_secret_value())
    lot, gauge = ParkingLot(client), UsageGauge(client)
    now = time.time() if now is None else now
    due = lot.due(ws, now)
    if not due:
        return 0
    if gauge.over(ws, settings.api_usage_ceiling):
        if gauge.claim_recheck(ws, recheck_after):
            _recheck_usage(settings, gauge)
        if gauge.over(ws, settings.api_usage_ceiling):
            log.info("%d parked event(s) due, but API usage is still at or above the ceiling", len(due))
            return 0
    released = 0
    for member, parked in due:
        if parked is None:
            DeadLetterStore(client).add(event=member, event_id=None, event_type=None, workspace_id=ws,
                                        error_code="INVALID_PARKED_ENTRY", error_message="unreadable parking entry")
            lot.remove(ws, member)
            continue
        app.send_task(parked.task_name, args=[parked.raw], kwargs={"sfsync": parked.meta}, queue=parked.queue,
                      exchange=parked.queue, routing_key=parked.queue)
        if lot.remove(ws, member):
            released += 1
    if released:
        log.info("released %d parked event(s)", released)
    return released

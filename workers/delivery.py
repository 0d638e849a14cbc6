"""Acting on outcomes: log what was written or skipped, schedule retries, dead-letter what cannot be written."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from events.deadletter import DeadLetterStore, raw_for_storage
from events.outcome_log import OutcomeLog
from schemas.events import Event, InvalidEvent
from schemas.settings import Settings
from workers.backoff import compute_backoff
from workers.sync.outcomes import DeadLetter, Outcome, Retry, Skipped, Written

log = logging.getLogger("sfsync.delivery")


@dataclass
class BatchItem:
    """One message of a batch: its raw argument, the parsed event (or why it is invalid), retry metadata."""

    raw: Any
    event: Event | None
    problem: InvalidEvent | None
    meta: dict[str, Any]
    task_name: str
    queue: str
    task_id: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)

    @property
    def attempt(self) -> int:
        """How many times this event has already failed transiently."""
        try:
            return max(int(self.meta.get("attempt", 0)), 0)
        except (TypeError, ValueError):
            return 0

    def ids(self) -> dict[str, Any]:
        if self.event is not None:
            return {"event_id": self.event.id, "event_type": self.event.type,
                    "workspace_id": self.event.workspace_id}
        problem = self.problem
        return {"event_id": getattr(problem, "event_id", None), "event_type": getattr(problem, "event_type", None),
                "workspace_id": getattr(problem, "workspace_id", None)}


class Delivery:
    def __init__(self, client: redis.Redis, settings: Settings, app):
        self.redis = client
        self.settings = settings
        self.app = app
        self.dead_letters = DeadLetterStore(client)
        self.outcome_log = OutcomeLog(client)

    # --- the one place outcomes are acted on ----------------------------------------------
    def settle(self, settled: list[tuple[BatchItem, Outcome | None]]) -> Counter:
        counts: Counter = Counter()
        history: dict[str, list[dict[str, Any]]] = {}
        for item, outcome in settled:
            label = self._settle_one(item, outcome)
            counts[label] += 1
            ids = item.ids()
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
        return counts

    def _settle_one(self, item: BatchItem, outcome: Outcome | None) -> str:
        """Act on one outcome; returns its label (written, duplicate, skipped_*, retried, dead_lettered)."""
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
        attempt = item.attempt + 1
        error = outcome.error
        if attempt >= self.settings.max_attempts:
            self._dead_letter(item, error.code, f"gave up after {attempt} attempts: {error.message}",
                              error.fields, attempts=attempt)
            return "dead_lettered"
        delay = outcome.after if outcome.after is not None else compute_backoff(
            attempt, base=self.settings.retry_backoff, cap=self.settings.retry_backoff_max)
        self.republish(item, countdown=delay, attempt=attempt, last_error=error.code)
        log.info("event will be retried in %.1fs after %s", delay, error.code,
                 extra={**item.ids(), "outcome": "retried", "error_code": error.code, "attempt": attempt})
        return "retried"

    def republish(self, item: BatchItem, *, countdown: float, attempt: int, last_error: str) -> None:
        meta = dict(item.meta)
        meta.update(attempt=attempt, last_error=last_error)
        meta.setdefault("first_failure_at", datetime.now(timezone.utc).isoformat())
        self.app.send_task(item.task_name, args=[item.raw], kwargs={"sfsync": meta}, queue=item.queue,
                           exchange=item.queue, routing_key=item.queue, countdown=max(countdown, 0.0))

    def requeue_all(self, items: list[BatchItem]) -> None:
        """An unexpected failure of a whole batch: put every message back, counting it as an attempt."""
        for item in items:
            if item.attempt + 1 >= self.settings.max_attempts:
                self._dead_letter(item, "INTERNAL_ERROR", "the batch failed unexpectedly too often",
                                  (), attempts=item.attempt + 1)
            else:
                self.republish(item, countdown=compute_backoff(
                    item.attempt + 1, base=self.settings.retry_backoff, cap=self.settings.retry_backoff_max),
                    attempt=item.attempt + 1, last_error="INTERNAL_ERROR")

    def _dead_letter(self, item: BatchItem, code: str, message: str, fields, *, attempts: int) -> None:
        ids = item.ids()
        first = item.meta.get("first_failure_at")
        try:
            first_at = datetime.fromisoformat(first) if first else None
        except (TypeError, ValueError):
            first_at = None
        record = self.dead_letters.add(
            event=raw_for_storage(item.raw), error_code=code, error_message=message, error_fields=fields,
            attempts=attempts, first_failure_at=first_at, task_name=item.task_name, queue=item.queue, **ids)
        log.warning("event dead-lettered: %s", code,
                    extra={**ids, "outcome": "dead_lettered", "error_code": code, "dead_letter_id": record.id})


def install(app) -> None:
    """Hook delivery concerns into the Celery app (undecodable messages, delivery caps)."""


def release_parked(app) -> int:
    """Beat task: put parked work whose time has come back on its queue; returns how many."""
    return 0

"""Acting on decisions: log what was written or skipped, republish, park, and keep dead letters — the one place it happens."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import redis

from events.deadletter import UNROUTED, DeadLetterStore, Retention, raw_for_storage
from events.late_contacts import LATE_CONTACT, LateContacts, WaitingEmail
from events.outcome_log import OutcomeLog
from events.parking import ParkedMessage, ParkingLot
from schemas.codes import ErrorCode
from schemas.events import EmailReplied, EmailSent, email_addresses, escape_surrogates
from schemas.workspace import is_workspace_id
from schemas.deadletter import DeadLetterRecord
from workers.decide import (DAY, Bury, Clock, Decision, Done, History, HoldForRetry, Park, RetryPolicy, WaitForContact,
                            decide)
from workers.messages import BatchItem
from workers.redelivery import first_failure_at
from workers.observability import metrics
from workers.observability.logs import log_batch
from workers.sync.outcomes import DeadLetter, Outcome, Written

log = logging.getLogger("sfsync.delivery")


class DeadLetters:
    """The one path into the dead-letter store: store the record, count the outcome, log it."""

    def __init__(self, client: redis.Redis, fallback_workspace: str, *,
                 known: Callable[[str], bool] | None = None, retention: Retention | None = None):
        """`known` says whether a workspace is served here (others' dead letters go to `_unrouted`)."""
        self.store = DeadLetterStore(client, known=known, retention=retention,
                                     on_drop=metrics.record_dead_letters_dropped)
        self.outcomes = OutcomeLog(client)
        self.fallback_workspace = fallback_workspace

    def keep(self, raw: Any, ids: dict[str, Any], code: str, message: str, *, fields=(), attempts: int = 1,
             first_failure_at: datetime | None = None, **where: Any) -> DeadLetterRecord:
        """Keep `raw` (as received) with its error; `where` names the task, queue, content type, task id."""
        stored, truncated = raw_for_storage(raw)
        record = self.store.add(event=stored, error_code=code, error_message=message, error_fields=fields,
                                attempts=attempts, first_failure_at=first_failure_at, truncated=truncated,
                                **ids, **where)
        self.outcomes.record(self.workspace_of(ids), [{**ids, "outcome": "dead_lettered", "error_code": code}],
                             served=self.store.bucket_of(ids.get("workspace_id")) != UNROUTED)
        metrics.set_dead_letters(self.store.count())
        log.warning("event dead-lettered: %s: %s", code, escape_surrogates(message[:300]),
                    extra={**ids, "outcome": "dead_lettered", "error_code": code, "dead_letter_id": record.id})
        return record

    def workspace_of(self, ids: dict[str, Any]) -> str:
        """Where an outcome is counted: the event's own workspace when it names a plausible one.

        A message too broken to name its workspace (or naming garbage, which must not become a
        Redis key) still came off this deployment's queues.
        """
        named = ids.get("workspace_id")
        if is_workspace_id(named):
            return named
        return self.fallback_workspace


class Settler:
    """Carries out each event's decision and records its outcome for `status`, replays and metrics."""

    def __init__(self, client: redis.Redis, workspace_id: str, *,
                 known: Callable[[str], bool] | None = None, retention: Retention | None = None,
                 policy: RetryPolicy | None = None):
        self.dead_letters = DeadLetters(client, workspace_id, known=known, retention=retention)
        self.policy = policy or RetryPolicy()
        self.outcomes = self.dead_letters.outcomes
        self.parking = ParkingLot(client, "parked")
        self.retries = ParkingLot(client, "retries")
        self.late = LateContacts(client)
        self.workspace_id = workspace_id

    def settle(self, settled: list[tuple[BatchItem, Outcome, Decision]]) -> Counter:
        counts: Counter = Counter()
        history: dict[str, list[dict[str, Any]]] = {}
        latencies: dict[str, list[float]] = {}
        now = time.time()
        self._keep_waiting([(item, decision) for item, _, decision in settled if isinstance(decision, WaitForContact)])
        by_type: Counter = Counter()
        for item, outcome, decision in settled:
            ids = item.ids()
            label = self._act(item, outcome, decision, ids)
            counts[label] += 1
            by_type[(ids.get("event_type") or "unknown", label)] += 1
            if label != "dead_lettered":  # the dead-letter path records its own entry
                workspace_id = self.dead_letters.workspace_of(ids)
                history.setdefault(workspace_id, []).append(_entry(ids, label, outcome, decision))
                waited = publish_to_write(item, now) if label == "written" else None
                if waited is not None:
                    latencies.setdefault(workspace_id, []).append(waited)
        for workspace_id, entries in history.items():
            try:
                self.outcomes.record(workspace_id, entries, latencies.get(workspace_id, ()))
            except Exception:  # the events' fates are carried out; only their history line is missing
                log.exception("could not record %d outcome(s) of workspace %s", len(entries), workspace_id)
        for (event_type, label), n in by_type.items():
            metrics.record_outcome(event_type, label, n)
        log_batch(log, self.workspace_id, counts)
        return counts

    def refuse(self, items: list[BatchItem]) -> Counter:
        """Items no batch can use (unreadable messages and queue items, broken parking entries): their problem
        is their outcome, decided and settled like any event's (they are dead-lettered as they came)."""
        clock = Clock(time.time())
        settled: list[tuple[BatchItem, Outcome, Decision]] = []
        for item in items:
            problem = item.problem
            outcome = DeadLetter(problem.code if problem else ErrorCode.INVALID_MESSAGE, problem.reason if problem else "")
            settled.append((item, outcome, decide(outcome, History(attempt=item.attempt), self.policy, clock)))
        return self.settle(settled)

    def _act(self, item: BatchItem, outcome: Outcome, decision: Decision, ids: dict[str, Any]) -> str:
        # one INFO line per batch (log_batch); each event's own line is at DEBUG
        if isinstance(decision, Done):
            _log_done(ids, decision.label, outcome)
            return decision.label
        if isinstance(decision, WaitForContact):  # kept by _keep_waiting, for the whole batch at once
            if log.isEnabledFor(logging.DEBUG):
                log.debug("event skipped: %s; it waits for its contact until %s", decision.label[len("skipped_"):],
                          _iso(decision.until), extra={**ids, "outcome": decision.label})
            return decision.label
        if isinstance(decision, HoldForRetry):
            # held in Redis, not as a countdown message in a worker: every worker releases it when due
            meta = _retry_meta(item, attempt=decision.attempt, code=decision.code)
            self.retries.park(self.workspace_id, [ParkedMessage(item.task_name, item.queue, item.raw, meta,
                                                                decision.code, time.time())],
                              time.time() + decision.after)
            metrics.record_retry(decision.code)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("event will be retried in %.1fs after %s", decision.after, decision.code,
                          extra={**ids, "outcome": "retried", "error_code": decision.code,
                                 "attempt": decision.attempt})
            return "retried"
        if isinstance(decision, Park):
            self._park(item, decision)
            return "parked"
        self.bury(item, decision)
        return "dead_lettered"

    def _keep_waiting(self, waiting: list[tuple[BatchItem, WaitForContact]]) -> None:
        """Emails skipped for no contact wait for it: one Redis script for the batch, no Salesforce call."""
        if not waiting:
            return
        emails = [_waiting_email(item, decision) for item, decision in waiting if item.event is not None]
        first = waiting[0][1]
        days = (first.until - first.since) / DAY
        kept = self.late.wait(self.workspace_id, emails, days=days, max_waiting=first.max_waiting)
        if kept["dropped"]:
            log.warning("%d waiting email(s) of %s dropped, the oldest first: more than %d waited for their "
                        "contact", kept["dropped"], self.workspace_id, first.max_waiting,
                        extra={"workspace_id": self.workspace_id})

    def bury(self, item: BatchItem, decision: Bury) -> DeadLetterRecord:
        return self.dead_letters.keep(item.raw, item.ids(), decision.code, decision.message, fields=decision.fields,
                                      attempts=decision.attempts, first_failure_at=_first_failure(item),
                                      task_name=item.task_name, queue=item.queue, task_id=item.task_id,
                                      replay_of=item.meta.get("replay_of"), content_type=item.content_type)

    def _park(self, item: BatchItem, decision: Park) -> None:
        meta = _retry_meta(item, attempt=item.attempt, code=decision.code)
        meta["parked"] = int(item.meta.get("parked", 0) or 0) + 1
        parked = ParkedMessage(item.task_name, item.queue, item.raw, meta, decision.code, time.time())
        self.parking.park(self.workspace_id, [parked], decision.until)
        metrics.set_parked(self.parking.count(self.workspace_id), self.workspace_id)
        log.warning("event parked for %.0fs after %s", max(decision.until - time.time(), 0), decision.code,
                    extra={**item.ids(), "outcome": "parked", "error_code": decision.code})


def publish_to_write(item: BatchItem, now: float) -> float | None:
    """Seconds from when the event's message was first queued (sfsync's publisher and replays stamp
    it; retries keep it) to `now`; from the event's `occurred_at` for a message another client sent."""
    published = item.meta.get("published_at")
    if isinstance(published, (int, float)) and math.isfinite(published):
        start = float(published)
    elif item.event is not None:
        start = item.event.occurred_at.timestamp()
    else:
        return None
    return max(now - start, 0.0)  # a publisher's clock ahead of ours is not a negative wait


def _waiting_email(item: BatchItem, decision: WaitForContact) -> WaitingEmail:
    # _keep_waiting passes parsed events only, and only an email is given a wait for its contact
    event: EmailSent | EmailReplied = item.event  # type: ignore[assignment]
    meta = {**item.meta, "waiting_since": _iso(decision.since)}
    sent = getattr(event.data, "sent_at", None)
    sent_ms = int(sent.timestamp() * 1000) if sent is not None else int(decision.since * 1000)
    return WaitingEmail(event.id, event.type, ParkedMessage(item.task_name, item.queue, item.raw, meta, LATE_CONTACT),
                        tuple(email_addresses(event)), sent_ms, decision.since)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def _retry_meta(item: BatchItem, *, attempt: int, code: str) -> dict[str, Any]:
    meta = dict(item.meta)
    meta.update(attempt=attempt, last_error=code)
    meta.setdefault("first_failure_at", datetime.now(timezone.utc).isoformat())
    return meta


def _first_failure(item: BatchItem) -> datetime | None:
    # always aware: a client may send a naive time, which the dead-letter record would refuse
    moment = first_failure_at(item)
    return datetime.fromtimestamp(moment, timezone.utc) if moment is not None else None


def _entry(ids: dict[str, Any], label: str, outcome: Outcome, decision: Decision) -> dict[str, Any]:
    entry = {**ids, "outcome": label}
    if isinstance(outcome, Written):
        entry.update(sobject=outcome.sobject, record_id=outcome.record_id, contact_id=outcome.contact_id,
                     contact_created=int(outcome.contact_created))
    elif isinstance(decision, (HoldForRetry, Park)):
        entry["error_code"] = decision.code
    elif isinstance(decision, Done) and label.startswith("skipped_"):
        entry["reason"] = label[len("skipped_"):]
    elif isinstance(decision, WaitForContact):
        entry.update(reason=label[len("skipped_"):], waiting_until=_iso(decision.until))
    if isinstance(outcome, Written) and outcome.person_object != "Contact":
        entry["person_object"] = outcome.person_object
    return entry


def _log_done(ids: dict[str, Any], label: str, outcome: Outcome) -> None:
    debug = log.isEnabledFor(logging.DEBUG)
    if isinstance(outcome, Written):
        if debug:
            log.debug("event %s", label, extra={**ids, "outcome": label, "sobject": outcome.sobject,
                                                "record_id": outcome.record_id})
        for warning in outcome.warnings:
            log.warning("event written with a field left out: %s", warning, extra={**ids, "outcome": "warning"})
    elif debug:
        log.debug("event skipped: %s", label[len("skipped_"):], extra={**ids, "outcome": label})

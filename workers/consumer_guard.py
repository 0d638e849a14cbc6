"""Celery's consumer, guarded: a task message no batch can use is dead-lettered with its raw body."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed

from events.deadletter import DeadLetterStore, raw_for_storage
from events.outcome_log import OutcomeLog
from events.redis_conn import connect
from events.topology import ROUTES
from schemas.events import MAX_EVENT_BYTES
from schemas.settings import Settings
from workers import broker_guard

log = logging.getLogger("sfsync.delivery")

#: bytes of a whole Celery message body; beyond it the message is dead-lettered unread (the event
#: limit plus room for the protocol's envelope and retry meta)
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES + 64 * 1024

_BATCH_TASKS = frozenset(task for task, _ in ROUTES.values())


# --- messages Celery itself cannot use ---------------------------------------------------------

def _message_ids(message, payload: Any = None) -> dict[str, Any]:
    """Whatever identifies the event in a message we could not use: our header, or the event's own fields."""
    headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
    ids = {"event_id": headers.get("sfsync_event_id"), "event_type": None, "workspace_id": None}
    args = payload[0] if isinstance(payload, (list, tuple)) and payload else None
    event = args[0] if isinstance(args, (list, tuple)) and args else None
    if isinstance(event, dict):
        for name, field_name in (("event_id", "id"), ("event_type", "type"), ("workspace_id", "workspace_id")):
            if isinstance(event.get(field_name), str):
                ids[name] = event[field_name]
    return ids


def check_message(message) -> tuple[str, str, Any] | None:
    """(code, reason, decoded payload or None) when a task message cannot reach a batch; None when it can.

    Runs in the consumer before celery-batches sees the message: a body it cannot read would
    otherwise fail later, inside the timer that flushes a whole batch.
    """
    body = message.body if isinstance(message.body, (bytes, str)) else b""
    if len(body) > MAX_MESSAGE_BYTES:
        return ("EVENT_TOO_LARGE", f"message body is {len(body):,} bytes; the limit is {MAX_MESSAGE_BYTES:,}", None)
    headers = message.headers if isinstance(message.headers, dict) else {}
    if not headers.get("id"):
        return ("INVALID_MESSAGE", "Celery message without a task id header (protocol 2 needs headers.id)", None)
    try:
        payload = message.decode()
    except ContentDisallowed:
        return ("CONTENT_DISALLOWED", f"content type {message.content_type!r} is not accepted; sfsync messages "
                                      f"are application/json", None)
    except Exception as exc:  # kombu wraps serializer errors in DecodeError; any failure means unreadable
        return ("UNDECODABLE_MESSAGE", f"cannot decode the {message.content_type!r} body: "
                                       f"{type(exc).__name__}: {str(exc)[:300]}", None)
    if not (isinstance(payload, (list, tuple)) and len(payload) == 3 and isinstance(payload[0], (list, tuple))
            and isinstance(payload[1], dict) and isinstance(payload[2], (dict, type(None)))):
        return ("INVALID_MESSAGE", "body is not Celery protocol 2: expected [[args], {kwargs}, {embed}], got "
                                   f"{type(payload).__name__}", payload)
    return None


class SfsyncConsumer(Consumer):
    """Celery's consumer, but a message it cannot use is dead-lettered with its raw body, not logged and dropped."""

    _dead_letter_client: redis.Redis | None = None

    def update_strategies(self):
        super().update_strategies()
        for name in _BATCH_TASKS & set(self.strategies):
            self.strategies[name] = self._guarded(self.strategies[name])

    def _guarded(self, strategy):
        def guarded_strategy(message, body, ack, reject, callbacks, **kwargs):
            problem = check_message(message)
            if problem is not None:
                code, reason, payload = problem
                return self._dead_letter_message(message, code, reason, payload)
            return strategy(message, body, ack, reject, callbacks, **kwargs)
        return guarded_strategy

    def on_decode_error(self, message, exc):
        self._dead_letter_message(message, "UNDECODABLE_MESSAGE",
                                  f"cannot decode the {message.content_type!r} body: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}")

    def on_unknown_message(self, body, message):
        self._dead_letter_message(message, "INVALID_MESSAGE", "not a Celery task message (no task header)")

    def on_unknown_task(self, body, message, exc):
        headers = message.headers if isinstance(message.headers, dict) else {}
        self._dead_letter_message(message, "UNKNOWN_TASK", f"no task named {headers.get('task')!r} on this worker")

    def on_invalid_task(self, body, message, exc):
        code = "CONTENT_DISALLOWED" if isinstance(exc, ContentDisallowed) else "INVALID_MESSAGE"
        self._dead_letter_message(message, code, f"{type(exc).__name__}: {str(exc)[:300]}")

    def _dead_letter_message(self, message, code: str, reason: str, payload: Any = None) -> None:
        """Store the raw message, then ack it; if Redis refuses, leave it unacked so it comes back."""
        settings: Settings = self.app.sfsync_settings
        headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
        info = getattr(message, "delivery_info", None) or {}
        ids = _message_ids(message, payload)
        raw, truncated = raw_for_storage(message.body)
        try:
            if self._dead_letter_client is None:
                self._dead_letter_client = connect(settings.redis_url.get_secret_value())
            record = DeadLetterStore(self._dead_letter_client).add(
                event=raw, error_code=code, error_message=reason, task_name=headers.get("task"),
                queue=info.get("routing_key"), content_type=getattr(message, "content_type", None),
                task_id=headers.get("id"), truncated=truncated, **ids)
            # a message too broken to name its workspace still came off this deployment's queues
            OutcomeLog(self._dead_letter_client).record(ids["workspace_id"] or settings.workspace_id, [
                {**ids, "outcome": "dead_lettered", "error_code": code}])
        except Exception:
            log.exception("could not dead-letter an unusable message (%s); it stays unacked and comes back", code)
            return
        log.warning("message dead-lettered: %s: %s", code, reason,
                    extra={**ids, "outcome": "dead_lettered", "error_code": code, "dead_letter_id": record.id})
        message.ack_log_error(log, self.connection_errors)


def install(app) -> None:
    """Hook delivery concerns into the Celery app: unusable messages and queue items are dead-lettered."""
    app.conf.worker_consumer = f"{SfsyncConsumer.__module__}:{SfsyncConsumer.__name__}"
    settings: Settings = app.sfsync_settings
    clients: list[redis.Redis] = []

    def dead_letter_item(queue: str, raw: bytes, reason: str) -> None:
        if not clients:
            clients.append(connect(settings.redis_url.get_secret_value()))
        stored, truncated = raw_for_storage(raw)
        record = DeadLetterStore(clients[0]).add(
            event=stored, event_id=None, event_type=None, workspace_id=None, error_code="INVALID_ENVELOPE",
            error_message=reason, queue=queue, truncated=truncated)
        OutcomeLog(clients[0]).record(settings.workspace_id, [
            {"event_id": None, "outcome": "dead_lettered", "error_code": "INVALID_ENVELOPE"}])
        log.warning("queue item dead-lettered: INVALID_ENVELOPE: %s", reason,
                    extra={"outcome": "dead_lettered", "error_code": "INVALID_ENVELOPE", "queue": queue,
                           "dead_letter_id": record.id})

    broker_guard.install(dead_letter_item)

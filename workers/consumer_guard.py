"""Celery's consumer, guarded: a task message no batch can use is dead-lettered with its raw body.

Runs in the worker's main process, before the consumer's buffer (workers/consumer/) takes a message: whatever fails
there (a body that cannot be decoded, a shape that is not Celery's protocol 2, nesting too
deep to hand to a pool process) would otherwise stop the worker or fail later, in the timer
that flushes a whole batch, taking every event of that batch with it.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from celery.worker.consumer import Consumer
from celery.exceptions import InvalidTaskError
from kombu.exceptions import ContentDisallowed, DecodeError

from kombu.message import Message as KombuMessage

from events.deadletter import Retention
from events.redis_conn import connect
from events.topology import ROUTES
from events.wire import first_event, sfsync_headers_of
from schemas.events import MAX_EVENT_BYTES, MAX_EVENT_DEPTH, escape_surrogates, nesting_depth, shape_summary
from schemas.codes import ErrorCode
from schemas.settings import Settings
from workers import broker_guard
from workers.consumer.batches import QueuedMessage, no_lone_surrogate, packable, signed_parts
from workers.consumer.dispatch import PoolShare
from workers.consumer.leases import shed
from workers.consumer.state import ConsumerState
from workers.decide import RetryPolicy
from workers.messages import unusable_item
from workers.settle import Settler
from workspaces.directory import Directory

log = logging.getLogger("sfsync.delivery")

#: bytes of a whole Celery message body; beyond it the message is dead-lettered unread (the event
#: limit plus room for the protocol's envelope and retry meta)
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES + 64 * 1024

#: levels of nesting one positional argument may have: an event (MAX_EVENT_DEPTH) in a bundle,
#: with room to spare so that an event just too deep is refused on its own, with its path.
#: Deeper arguments are refused with their whole message: handing them to a pool process
#: (pickle) and storing them (JSON) both recurse, and fail near 1,000 levels.
MAX_ARGUMENT_DEPTH = 2 * MAX_EVENT_DEPTH
#: levels of nesting kwargs and the protocol's embed may have (sfsync's own retry metadata has 2)
MAX_OPTIONS_DEPTH = 16

_BATCH_TASKS = frozenset(task for task, _ in ROUTES.values())
#: the tasks an event queue may carry; anything else on it (a Celery built-in such as
#: celery.chord_unlock included) is dead-lettered as UNKNOWN_TASK, never run
TASKS_BY_QUEUE: dict[str, frozenset[str]] = {queue: _BATCH_TASKS for _, queue in ROUTES.values()}


# --- messages Celery itself cannot use ---------------------------------------------------------

def _message_ids(message, payload: Any = None) -> dict[str, Any]:
    """Whatever identifies the event in a message we could not use: our header, or the event's own fields."""
    headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
    header_id = headers.get("sfsync_event_id")
    ids = {"event_id": escape_surrogates(header_id) if isinstance(header_id, str) else None,
           "event_type": None, "workspace_id": None}
    # a bundle: its first event names the message
    event = first_event(payload[0] if isinstance(payload, (list, tuple)) and payload else None)
    if event is not None:
        for name, field_name in (("event_id", "id"), ("event_type", "type"), ("workspace_id", "workspace_id")):
            if isinstance(event.get(field_name), str):
                ids[name] = escape_surrogates(event[field_name])
    return ids


def check_message(message) -> tuple[str, str, Any] | None:
    """(code, reason, decoded payload or None) when a task message cannot reach a batch; None when it can.

    Runs in the consumer before the batch buffer sees the message: a body it cannot read would
    otherwise fail later, inside the timer that flushes a whole batch.
    """
    return inspect_message(message)[0]


def inspect_message(message) -> tuple[tuple[str, str, Any] | None, bool]:
    """check_message's answer, and whether the events the message carries were found within the
    event's bounds (depth, valid Unicode) on the way: the pool then does not walk them again."""
    body = message.body if isinstance(message.body, (bytes, str)) else b""
    if len(body) > MAX_MESSAGE_BYTES:
        return (ErrorCode.EVENT_TOO_LARGE, f"message body is {len(body):,} bytes; the limit is {MAX_MESSAGE_BYTES:,}",
                None), False
    headers = message.headers if isinstance(message.headers, dict) else {}
    if not headers.get("id") or not isinstance(headers["id"], str):
        return (ErrorCode.INVALID_MESSAGE, "Celery message without a task id header (protocol 2 needs headers.id)",
                None), False
    try:
        payload = message.decode()
    except RecursionError:
        return (ErrorCode.UNDECODABLE_MESSAGE, ("message body nested too deeply to decode (the JSON decoder recurses "
                                                "once per level)"), None), False
    except ContentDisallowed:
        return (ErrorCode.CONTENT_DISALLOWED, (f"content type {message.content_type!r} is not accepted; sfsync "
                                               f"messages are application/json"), None), False
    except Exception as exc:  # noqa: BLE001 - kombu wraps serializer errors in DecodeError; any failure means unreadable
        return (ErrorCode.UNDECODABLE_MESSAGE, (f"cannot decode the {message.content_type!r} body: "
                                                f"{type(exc).__name__}: {str(exc)[:300]}"), None), False
    if not (isinstance(payload, (list, tuple)) and len(payload) == 3 and isinstance(payload[0], (list, tuple))
            and isinstance(payload[1], dict) and isinstance(payload[2], (dict, type(None)))):
        return (ErrorCode.INVALID_MESSAGE, ("body is not Celery protocol 2: expected [[args], {kwargs}, {embed}], "
                                            f"got {type(payload).__name__}"), payload), False
    packed = packable(message)
    return _shape_problem(payload, text_valid=packed is not None and no_lone_surrogate(packed))


def _shape_problem(payload, text_valid: bool = False) -> tuple[tuple[str, str, Any] | None, bool]:
    """The message refused whole when an argument is deeper than MAX_ARGUMENT_DEPTH; else whether every
    argument is an event or a bundle of them (objects, not JSON text) within the event's depth and
    valid Unicode (a bundle's events are a level less deep than the bundle). `text_valid`: the body
    it was decoded from cannot hold invalid Unicode (see no_lone_surrogate), so only depth is walked."""
    checked = True
    for n, argument in enumerate(payload[0]):
        if text_valid:
            depth, text_ok = nesting_depth(argument, MAX_ARGUMENT_DEPTH), True
        else:
            depth, text_ok = shape_summary(argument, MAX_ARGUMENT_DEPTH)
        if depth > MAX_ARGUMENT_DEPTH:
            return (ErrorCode.INVALID_EVENT, (f"args[{n}]: nested deeper than {MAX_ARGUMENT_DEPTH} levels (an event "
                                              f"may nest {MAX_EVENT_DEPTH}); the whole message is refused"),
                    payload), False
        checked = checked and text_ok and depth <= MAX_EVENT_DEPTH and isinstance(argument, (dict, list))
    for name, options in (("kwargs", payload[1]), ("embed", payload[2])):
        if nesting_depth(options, MAX_OPTIONS_DEPTH) > MAX_OPTIONS_DEPTH:
            return (ErrorCode.INVALID_MESSAGE, f"{name}: nested deeper than {MAX_OPTIONS_DEPTH} levels", payload), False
    return None, checked


def _decoded(message) -> Any:
    """The body read as JSON whatever content type it claims (never unpickled): only to name its event."""
    try:
        return json.loads(message.body)
    except Exception:  # noqa: BLE001 - RecursionError included: then there is no event to name
        return None


class SfsyncConsumer(Consumer):
    """Celery's consumer, but a message it cannot use is dead-lettered with its raw body, not logged and dropped."""

    _settler: Settler | None = None

    def on_close(self):
        # the broker connection was lost: Celery clears its own state and flushes the pool, which
        # forgets every batch no process has accepted yet; this start's state is over (its held
        # messages belong to the lost connection), and the forgotten batches give back their
        # process slots and their messages (see workers/consumer/dispatch.py, Jobs)
        super().on_close()
        try:
            state = getattr(self, ConsumerState.ATTRIBUTE, None)
            if state is not None:
                state.stop()
            share = getattr(self, PoolShare.ATTRIBUTE, None)
            if share is not None:
                share.jobs.sweep()
        except Exception:  # the reconnection must go on; the next tick sweeps again
            log.exception("could not release what the lost connection held")

    def update_strategies(self):
        super().update_strategies()
        for name in _BATCH_TASKS & set(self.strategies):
            self.strategies[name] = self._guarded(self.strategies[name])

    def _guarded(self, strategy):
        def guarded_strategy(message, body, ack, reject, callbacks, **kwargs):
            problem, shape_checked = inspect_message(message)
            if problem is not None:
                code, reason, payload = problem
                return self._dead_letter_message(message, code, reason, payload)
            try:
                result = strategy(message, body, ack, reject, callbacks, sfsync_shape_checked=shape_checked, **kwargs)
            except (InvalidTaskError, ContentDisallowed, DecodeError):
                raise  # Celery's consumer turns these into on_invalid_task / on_decode_error
            except Exception as exc:  # noqa: BLE001 - anything else from a header Celery trips over would stop the worker
                return self._dead_letter_message(message, ErrorCode.INVALID_MESSAGE, f"Celery could not accept the "
                                                 f"message: {type(exc).__name__}: {str(exc)[:300]}",
                                                 _decoded(message))
            # taken in: from here on only its delivery tag is needed (the raw body kept so far is
            # what a dead letter above would have stored)
            shed(message)
            return result
        return guarded_strategy

    def on_decode_error(self, message, exc):
        self._dead_letter_message(message, ErrorCode.UNDECODABLE_MESSAGE,
                                  f"cannot decode the {message.content_type!r} body: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}")

    def on_unknown_message(self, body, message):
        self._dead_letter_message(message, ErrorCode.INVALID_MESSAGE, "not a Celery task message (no task header)")

    def on_unknown_task(self, body, message, exc):
        headers = message.headers if isinstance(message.headers, dict) else {}
        self._dead_letter_message(message, ErrorCode.UNKNOWN_TASK, f"headers.task: no task named {headers.get('task')!r} "
                                                           f"on this worker")

    def on_invalid_task(self, body, message, exc):
        code = ErrorCode.CONTENT_DISALLOWED if isinstance(exc, ContentDisallowed) else ErrorCode.INVALID_MESSAGE
        self._dead_letter_message(message, code, f"{type(exc).__name__}: {str(exc)[:300]}")

    def _dead_letter_message(self, message, code: str, reason: str, payload: Any = None) -> None:
        """Store the raw message, then ack it; if Redis refuses, leave it unacked so it comes back."""
        settings: Settings = self.app.sfsync_settings  # type: ignore[attr-defined]  # sfsync's own attribute on its app
        headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
        info = getattr(message, "delivery_info", None) or {}
        ids = _message_ids(message, payload if payload is not None else _decoded(message))
        item = unusable_item(message.body, ids, code, reason, task_name=headers.get("task"),
                             queue=info.get("routing_key"), task_id=headers.get("id"),
                             content_type=getattr(message, "content_type", None))
        try:
            if self._settler is None:
                self._settler = settler_of(settings)
            self._settler.refuse([item])
        except Exception:
            log.exception("could not dead-letter an unusable message (%s); it stays unacked and comes back", code)
            return
        # connection_errors: set by Celery's Consumer.__init__ from its connection (the stubs omit it)
        message.ack_log_error(log, self.connection_errors)  # type: ignore[attr-defined]


def _decode_body(body: str, encoding: str) -> bytes:
    """A body as kombu's Redis channel decodes it (base64, or text as it is)."""
    if encoding == "base64":
        return base64.b64decode(body)
    if encoding == "utf-8":
        return body.encode("utf-8", "surrogatepass")
    raise LookupError(f"unknown body encoding {encoding!r}")


def unpack_queue_item(raw: str) -> tuple[str, QueuedMessage] | tuple[None, broker_guard.Unreadable]:
    """A queue item taken off the queue without kombu (a flooding workspace's, moved to its overflow):
    (task name, message) when a batch can use it, else (None, why) with the same checks and codes as
    the read loop and the consumer apply to items they take."""
    payload: Any = None
    code: str
    try:
        payload = json.loads(raw)
        code, problem = broker_guard.INVALID_ENVELOPE, broker_guard.envelope_problem(payload, _decode_body)
        if problem is None:
            queue = payload["properties"]["delivery_info"]["routing_key"]
            code, problem = broker_guard.UNKNOWN_TASK, broker_guard.task_problem(payload, queue, TASKS_BY_QUEUE)
    except RecursionError:
        code, problem = broker_guard.INVALID_ENVELOPE, "queue item nested too deeply to parse"
    except (ValueError, TypeError, KeyError) as exc:
        code, problem = broker_guard.INVALID_ENVELOPE, f"queue item is not JSON: {type(exc).__name__}: {str(exc)[:200]}"
    if problem is None:
        properties, headers = payload["properties"], payload.get("headers") or {}
        body = payload["body"]
        encoding = properties.get("body_encoding")
        # kombu's Message takes bytes as its transports give them (the stubs say str)
        message = KombuMessage(body=_decode_body(body, encoding) if encoding else body,  # type: ignore[arg-type]
                               content_type=payload.get("content-type"),
                               content_encoding=payload.get("content-encoding"), headers=headers,
                               properties=properties, delivery_info=properties.get("delivery_info"),
                               accept=["application/json"])
        checked = check_message(message)
        if checked is None:
            args, kwargs, _ = message.decode()
            return headers["task"], QueuedMessage(headers["id"], tuple(args), dict(kwargs),
                                                  dict(properties.get("delivery_info") or {}),
                                                  headers=sfsync_headers_of(headers),
                                                  **signed_parts(headers, message.body))
        code, problem, _ = checked
    ids, task_name, task_id, content_type = broker_guard.readable_ids(payload)
    return None, broker_guard.Unreadable(code, escape_surrogates(problem), ids, task_name, task_id, content_type)


def settler_of(settings: Settings, client=None) -> Settler:
    """The settler of what the consumer cannot use: workspaces this deployment does not serve share
    the `_unrouted` dead-letter bucket, so garbage ids cannot create namespaces."""
    client = client or connect(settings.redis_url.get_secret_value())
    return Settler(client, settings.workspace_id, known=Directory(settings, client).known,
                   retention=Retention.from_settings(settings), policy=RetryPolicy.from_settings(settings))


def install(app) -> None:
    """Hook delivery concerns into the Celery app: unusable messages and queue items are dead-lettered."""
    app.conf.worker_consumer = f"{SfsyncConsumer.__module__}:{SfsyncConsumer.__name__}"
    settings: Settings = app.sfsync_settings
    settlers: list[Settler] = []

    def dead_letter_item(queue: str, raw: bytes, why: broker_guard.Unreadable) -> None:
        if not settlers:
            settlers.append(settler_of(settings))
        settlers[0].refuse([why.item(raw, queue)])

    broker_guard.install(dead_letter_item, TASKS_BY_QUEUE)

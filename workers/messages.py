"""From a Celery request to the events it carries: one BatchItem per event, parsed or with its problem."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from events.topology import route_for
from schemas.codes import ErrorCode
from schemas.events import Event, InvalidEvent, escape_surrogates, parse_event

log = logging.getLogger("sfsync.worker")


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
    #: position in a bundle (a message carrying several events); None for a one-event message
    part: int | None = None
    #: the message's sfsync_signature header and its body's exact bytes (None when it came unsigned)
    signature: str | None = None
    body: bytes | None = None
    #: the content type a message no batch could read claimed (kept with its dead letter)
    content_type: str | None = None

    @property
    def key(self) -> str | None:
        """This event's own key within its message (the task id, plus its place in a bundle)."""
        if self.task_id is None:
            return None
        return self.task_id if self.part is None else f"{self.task_id}#{self.part}"

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


def unusable_item(raw: Any, ids: dict[str, Any], code: str, reason: str, *, task_name: str | None = None,
                  queue: str | None = None, task_id: str | None = None, content_type: str | None = None) -> BatchItem:
    """A message, queue item or parking entry no batch can use, as an item whose problem is its outcome:
    settled like any other event (workers/settle.py, Settler.refuse), it is dead-lettered as it came."""
    problem = InvalidEvent(reason, code=code, event_id=ids.get("event_id"), event_type=ids.get("event_type"),
                           workspace_id=ids.get("workspace_id"))
    # task and queue are None when the item never named them: its dead letter says so
    return BatchItem(raw=raw, event=None, problem=problem, meta={}, task_name=cast(str, task_name),
                     queue=cast(str, queue), task_id=task_id, content_type=content_type)


def _items(request: Any, task_name: str, queue: str) -> list[BatchItem]:
    """The events one message carries: each positional argument is an event or a bundle of events.

    The contract sends one argument; a client that sends several (`args=[E1, E2]`) has each one
    synced as if it were the bundle `[E1, E2]`, so no event in a message goes unaccounted for.
    """
    try:
        args = list(_arguments(request))
    except Exception as exc:  # noqa: BLE001 - kombu's decoder: whatever it raises, the message is unreadable
        # the consumer decoded these very bytes before holding them packed: this is not expected
        packed = getattr(request, "packed", None) or b""
        return [_item(packed.decode("utf-8", "replace"), request, task_name, queue,
                      problem=InvalidEvent(f"cannot decode the message body: {type(exc).__name__}: {str(exc)[:300]}",
                                           code=ErrorCode.UNDECODABLE_MESSAGE))]
    if not args:
        return [_item(None, request, task_name, queue)]
    pieces: list[tuple[Any, InvalidEvent | None]] = []
    bundled = False
    for position, arg in enumerate(args):
        parts = _bundle(arg)
        if parts is None:
            pieces.append((arg, None))
            continue
        bundled = True
        if not parts:
            pieces.append((None, InvalidEvent(f"message carries an empty bundle (args[{position}] is [])",
                                              code=ErrorCode.INVALID_MESSAGE)))
        pieces.extend((part, None) for part in parts)
    if not bundled and len(pieces) == 1:
        return [_item(pieces[0][0], request, task_name, queue)]
    return [_item(raw, request, task_name, queue, part=n, problem=problem)
            for n, (raw, problem) in enumerate(pieces)]


def _arguments(request: Any) -> tuple:
    """A request's positional arguments: a held message's, decoded from its packed body (QueuedMessage)."""
    arguments = getattr(request, "arguments", None)
    return arguments() if callable(arguments) else tuple(request.args or ())


def _bundle(raw: Any) -> list[Any] | None:
    if isinstance(raw, list):
        return raw
    if isinstance(raw, (str, bytes)) and raw.lstrip()[:1] in ("[", b"["):
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError):
            return None  # parse_event names the JSON error
        return decoded if isinstance(decoded, list) else None
    return None


#: retry metadata an earlier worker put in kwargs["sfsync"], and the type each must have
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "attempt": int, "parked": int, "first_failure_at": str, "last_error": str, "replay_of": str, "replayed_at": str,
    "waiting_since": str, "published_at": (int, float)}


def _meta(request: Any) -> dict[str, Any]:
    """The message's retry metadata, less anything of the wrong type (a client may send any kwargs)."""
    kwargs = getattr(request, "kwargs", None)
    meta = kwargs.get("sfsync") if isinstance(kwargs, dict) else None
    if not isinstance(meta, dict):
        return {}
    return {name: value for name, value in meta.items()
            if name in _META_TYPES and isinstance(value, _META_TYPES[name]) and not isinstance(value, bool)}


def _item(raw: Any, request: Any, task_name: str, queue: str, *, part: int | None = None,
          problem: InvalidEvent | None = None) -> BatchItem:
    event: Event | None = None
    if problem is None:
        try:
            if raw is None:
                raise InvalidEvent("message carries no event (args[0] is missing)", code=ErrorCode.INVALID_MESSAGE)
            event = parse_event(raw, shape_checked=getattr(request, "shape_checked", False))
        except InvalidEvent as exc:
            problem = exc
    if event is not None and route_for(event.type) != (task_name, queue):
        # the event's own type decides how it is synced and where its retries go; the queue
        # it came on is only transport
        log.warning("event of type %s arrived as task %s on queue %s; handled by its own type", event.type,
                    escape_surrogates(str(task_name)), queue,
                    extra={"event_id": event.id, "event_type": event.type, "workspace_id": event.workspace_id})
        task_name, queue = route_for(event.type)
    return BatchItem(raw=raw, event=event, problem=problem, meta=_meta(request),
                     task_name=task_name, queue=queue, task_id=getattr(request, "id", None),
                     delivery_info=getattr(request, "delivery_info", None) or {}, part=part,
                     signature=getattr(request, "signature", None), body=getattr(request, "body", None))

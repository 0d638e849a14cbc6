"""From a Celery request to the events it carries: one BatchItem per event, parsed or with its problem."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from schemas.events import Event, InvalidEvent, parse_event


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



def _items(request: Any, task_name: str, queue: str) -> list[BatchItem]:
    """The events one message carries: itself, or each element of a bundle (a JSON array of events)."""
    raw = request.args[0] if request.args else None
    parts = _bundle(raw)
    if parts is None:
        return [_item(raw, request, task_name, queue)]
    if not parts:
        return [_item(None, request, task_name, queue, problem=InvalidEvent(
            "message carries an empty bundle (args[0] is [])", code="INVALID_MESSAGE"))]
    return [_item(part, request, task_name, queue, part=n) for n, part in enumerate(parts)]


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


def _item(raw: Any, request: Any, task_name: str, queue: str, *, part: int | None = None,
          problem: InvalidEvent | None = None) -> BatchItem:
    meta = (request.kwargs or {}).get("sfsync") or {}
    event: Event | None = None
    if problem is None:
        try:
            if raw is None:
                raise InvalidEvent("message carries no event (args[0] is missing)", code="INVALID_MESSAGE")
            event = parse_event(raw)
        except InvalidEvent as exc:
            problem = exc
    return BatchItem(raw=raw, event=event, problem=problem, meta=meta if isinstance(meta, dict) else {},
                     task_name=task_name, queue=queue, task_id=getattr(request, "id", None),
                     delivery_info=getattr(request, "delivery_info", None) or {}, part=part)


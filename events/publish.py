"""The publish API for emitters: validate events, then queue them as Celery messages on Redis."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from events.topology import declarations, route_for
from schemas.events import Event, InvalidEvent, event_to_json, parse_event


class PublishError(Exception):
    """Nothing was published: at least one event is invalid (see `problems`)."""

    def __init__(self, problems: list[tuple[int, InvalidEvent]]):
        self.problems = problems
        first = "; ".join(f"#{i}: {p.reason}" for i, p in problems[:3])
        super().__init__(f"{len(problems)} invalid event(s), nothing published: {first}")


@functools.lru_cache(maxsize=8)
def publisher_app(broker_url: str) -> Celery:
    """A minimal Celery app that only sends: emitters need not import the worker code."""
    app = Celery("sfsync-publisher", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                    broker_connection_retry_on_startup=True, task_queues=declarations(),
                    broker_transport_options={"socket_timeout": 10, "socket_connect_timeout": 5})
    return app


def _default_broker() -> str:
    from schemas.settings import load_settings

    return load_settings().redis_url.get_secret_value()


@dataclass(frozen=True)
class Published:
    event_id: str
    event_type: str
    queue: str
    task_id: str


def message_for(event: Event) -> tuple[str, str, dict[str, Any]]:
    """(task name, queue, event JSON) — the exact Celery message any client must send."""
    task_name, queue = route_for(event.type)
    return task_name, queue, event_to_json(event)


def publish_many(events: Iterable[Event | dict[str, Any] | str | bytes], *, broker_url: str | None = None,
                 skip_invalid: bool = False) -> tuple[list[Published], list[tuple[int, InvalidEvent]]]:
    """Validate every event, then publish them over one connection.

    Unless skip_invalid, a single invalid event stops the whole call before anything is sent.
    Returns (published, problems) where problems are (index, InvalidEvent).
    """
    parsed: list[Event] = []
    problems: list[tuple[int, InvalidEvent]] = []
    for index, raw in enumerate(events):
        try:
            parsed.append(raw if not isinstance(raw, (dict, str, bytes, bytearray)) else parse_event(raw))
        except InvalidEvent as problem:
            problems.append((index, problem))
    if problems and not skip_invalid:
        raise PublishError(problems)
    app = publisher_app(broker_url or _default_broker())
    published: list[Published] = []
    with app.producer_or_acquire() as producer:
        for event in parsed:
            task_name, queue, body = message_for(event)
            task_id = str(uuid.uuid4())
            app.send_task(task_name, args=[body], queue=queue, exchange=queue, routing_key=queue, task_id=task_id,
                          producer=producer, headers={"sfsync_event_id": event.id})
            published.append(Published(event.id, event.type, queue, task_id))
    return published, problems


def publish(event: Event | dict[str, Any] | str | bytes, *, broker_url: str | None = None) -> Published:
    """Validate one event and queue it; raises PublishError (with the reason) when it is invalid."""
    published, _ = publish_many([event], broker_url=broker_url)
    return published[0]

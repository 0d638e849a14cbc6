"""The publish API for emitters: validate events, then queue them as Celery messages on Redis."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from events.redis_conn import connect
from events.topology import declarations, route_for
from events.wire import queue_item, sfsync_headers
from schemas.events import MAX_EVENT_DEPTH, Event, InvalidEvent, event_to_json, parse_event, shape_problem
from schemas.redis_url import kombu_broker


class ReplicaWaitError(Exception):
    """Events were queued on the primary, but fewer replicas than asked confirmed them in time."""

    def __init__(self, queue: str, asked: int, acknowledged: int, timeout_ms: int, queued: list["Published"]):
        self.queue, self.asked, self.acknowledged, self.queued = queue, asked, acknowledged, queued
        super().__init__(
            f"only {acknowledged} of {asked} replica(s) acknowledged a bundle on {queue!r} within {timeout_ms} ms; "
            f"its events ARE queued on the primary ({len(queued)} event(s) queued by this call so far, see "
            f"`queued`) and may be lost if the primary fails before a replica has them")


class PublishError(Exception):
    """Nothing was published: at least one event is invalid (see `problems`)."""

    def __init__(self, problems: list[tuple[int, InvalidEvent]]):
        self.problems = problems
        first = "; ".join(f"#{i}: {p.reason}" for i, p in problems[:3])
        super().__init__(f"{len(problems)} invalid event(s), nothing published: {first}")


@functools.lru_cache(maxsize=8)
def publisher_app(broker_url: str) -> Celery:
    """A minimal Celery app that only sends: emitters need not import the worker code."""
    transport = {"socket_timeout": 10, "socket_connect_timeout": 5}
    broker = kombu_broker(broker_url, **transport)
    transport.update(broker.transport_options)
    app = Celery("sfsync-publisher", broker=broker.url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                    broker_connection_retry_on_startup=True, task_queues=declarations(),
                    broker_transport_options=transport)
    if broker.use_ssl is not None:
        app.conf.broker_use_ssl = broker.use_ssl
    return app


def _default_broker() -> str:
    # deferred: a publisher that names its broker never loads sfsync's settings (pydantic-settings)
    from schemas.settings import load_settings

    return load_settings().redis_url.get_secret_value()


#: events per message when publishing many at once, and the JSON bytes a bundle may carry
BUNDLE_EVENTS = 5
BUNDLE_BYTES = 512 * 1024


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


def bundles(events: list[Event], *, max_events: int = BUNDLE_EVENTS,
            max_bytes: int = BUNDLE_BYTES) -> list[tuple[str, str, list[Event], list[dict[str, Any]]]]:
    """Group events into messages: (task, queue, events, bodies), one workspace's events of one
    type together, in order.

    A message costs the publisher, Redis and the worker's consumer about the same whatever it
    carries, so a burst goes out as bundles of up to `max_events` events (and `max_bytes` of
    JSON); an event larger than that travels alone. A message never mixes workspaces: its
    `sfsync_workspace` header names the one its events belong to (see `message_headers`).
    """
    out: list[tuple[str, str, list[Event], list[dict[str, Any]]]] = []
    open_: dict[tuple[str, str], tuple[list[Event], list[dict[str, Any]], list[int]]] = {}
    for event in events:
        task_name, queue, body = message_for(event)
        size = len(json.dumps(body, separators=(",", ":")))
        group = (queue, event.workspace_id)
        current = open_.get(group)
        if current and (len(current[0]) >= max_events or current[2][0] + size > max_bytes):
            out.append((task_name, queue, current[0], current[1]))
            current = None
        if current is None:
            current = open_[group] = ([], [], [0])
        current[0].append(event)
        current[1].append(body)
        current[2][0] += size
    for (queue, _), (evs, bodies, _) in open_.items():
        if evs:
            out.append((route_for(evs[0].type)[0], queue, evs, bodies))
    return out


def message_headers(events: list[Event]) -> dict[str, Any]:
    """sfsync's headers of a message carrying these events (of one workspace, see `bundles`)."""
    return sfsync_headers(events[0].workspace_id if events else None, len(events))


def stamped(at: float | None = None) -> dict[str, Any]:
    """A message's kwargs from sfsync's publisher: when it was queued (Unix seconds), which the workers
    measure publish-to-write latency from (see docs/events.md); retries and parked copies keep it."""
    return {"sfsync": {"published_at": round(time.time() if at is None else at, 3)}}


def _validated(raw: Event | dict[str, Any] | str | bytes) -> Event:
    """The event, checked as the worker will check it; InvalidEvent when it cannot be published."""
    if isinstance(raw, (dict, str, bytes, bytearray)):
        return parse_event(raw)
    # a model built in code skips parse_event's checks (depth, valid Unicode): run them on its JSON
    try:
        body = event_to_json(raw)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise InvalidEvent(f"event cannot be written as JSON (nested deeper than {MAX_EVENT_DEPTH} levels, or a value "
                           f"JSON cannot hold): {type(exc).__name__}: {str(exc)[:200]}",
                           event_id=getattr(raw, "id", None), event_type=getattr(raw, "type", None)) from None
    problem = shape_problem(body)
    if problem is not None:
        raise InvalidEvent(problem, event_id=raw.id, event_type=raw.type, workspace_id=raw.workspace_id)
    return raw


def publish_many(events: Iterable[Event | dict[str, Any] | str | bytes], *, broker_url: str | None = None,
                 skip_invalid: bool = False, replicas: int = 0, replica_timeout_ms: int = 1000,
                 signing_key: str | None = None) -> tuple[list[Published], list[tuple[int, InvalidEvent]]]:
    """Validate every event, then publish them over one connection, bundled (see `bundles`).

    Unless skip_invalid, a single invalid event stops the whole call before anything is sent.
    With replicas > 0 each bundle is confirmed by that many replicas (Redis WAIT) before the
    next is sent; ReplicaWaitError when fewer confirm within replica_timeout_ms.
    With signing_key (one of the events' workspace's emitter keys), each message carries header
    sfsync_signature over its body (events/signing.py).
    Returns (published, problems) where problems are (index, InvalidEvent).
    """
    parsed: list[Event] = []
    problems: list[tuple[int, InvalidEvent]] = []
    for index, raw in enumerate(events):
        try:
            parsed.append(_validated(raw))
        except InvalidEvent as problem:
            problems.append((index, problem))
    if problems and not skip_invalid:
        raise PublishError(problems)
    if replicas < 0 or replica_timeout_ms <= 0:
        # WAIT with a timeout of 0 blocks for ever: a publish must stay bounded
        raise ValueError("replicas must be >= 0 and replica_timeout_ms > 0")
    if replicas or signing_key is not None:
        # the body must be sent as the bytes that were signed: pushed as sfsync writes it, not by kombu
        return _publish_waiting(parsed, broker_url or _default_broker(), replicas, replica_timeout_ms,
                                signing_key), problems
    app = publisher_app(broker_url or _default_broker())
    published: list[Published] = []
    with app.producer_or_acquire() as producer:
        for task_name, queue, evs, bodies in bundles(parsed):
            task_id = str(uuid.uuid4())
            # one event travels as the event itself: the documented single-event message
            arg: Any = bodies[0] if len(bodies) == 1 else bodies
            # declare=[]: the workers declare the queues; an emitter only pushes (it may be allowed nothing else,
            # see deploy/redis/users.acl)
            app.send_task(task_name, args=[arg], kwargs=stamped(), queue=queue, exchange="", routing_key=queue,
                          task_id=task_id, producer=producer, headers=message_headers(evs), declare=[])
            published.extend(Published(e.id, e.type, queue, task_id) for e in evs)
    return published, problems


def _publish_waiting(parsed: list[Event], url: str, replicas: int, timeout_ms: int,
                     signing_key: str | None = None) -> list[Published]:
    """Push each bundle (signed with `signing_key` when given) and, with `replicas`, WAIT for them on the
    same connection: WAIT covers only the writes of the connection that calls it, and kombu's producer
    does not expose its own."""
    client = connect(url)
    published: list[Published] = []
    try:
        for task_name, queue, evs, bodies in bundles(parsed):
            task_id = str(uuid.uuid4())
            arg: Any = bodies[0] if len(bodies) == 1 else bodies
            item = queue_item(task_name, queue, [arg], task_id=task_id, headers=message_headers(evs),
                              kwargs=stamped(), signing_key=signing_key)
            if not replicas:
                client.lpush(queue, item)
                published.extend(Published(e.id, e.type, queue, task_id) for e in evs)
                continue
            # transaction=False: WAIT inside MULTI returns at once, without waiting
            pipe = client.pipeline(transaction=False)
            pipe.lpush(queue, item)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            _, acknowledged = pipe.execute()
            published.extend(Published(e.id, e.type, queue, task_id) for e in evs)
            if int(acknowledged) < replicas:
                raise ReplicaWaitError(queue, replicas, int(acknowledged), timeout_ms, published)
    finally:
        client.close()
    return published


def publish(event: Event | dict[str, Any] | str | bytes, *, broker_url: str | None = None,
            signing_key: str | None = None) -> Published:
    """Validate one event and queue it; raises PublishError (with the reason) when it is invalid."""
    published, _ = publish_many([event], broker_url=broker_url, signing_key=signing_key)
    return published[0]

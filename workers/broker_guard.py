"""A guard in kombu's Redis read loop: an item on a queue that is not a well-formed message is dead-lettered.

kombu pops each item with BRPOP and parses its envelope before any Celery hook runs; an item
that is not JSON, or an envelope whose fields kombu or Celery cannot use (a missing
`delivery_info.routing_key`, a `delivery_tag` that is an object, `headers` that are a list, an
unknown `body_encoding`, ...), raises out of the event loop: Celery stops the whole worker
("Unrecoverable error") or drops the connection and the item with it. The item comes back to
the next worker after the visibility timeout and stops that one too. One stray LPUSH — a broken
emitter, an operator's typo, an attacker with Redis access — could stop a fleet. So every
field kombu and Celery read from an envelope is checked here first, and an item that fails is
kept in the dead-letter store, with the field named and whatever event ids its body yields.

It also reads more than one message per round trip. kombu pops one item per BRPOP and then
records it as unacknowledged with a second round trip that serialises the whole envelope again
and sends it back to Redis. Here, after each BRPOP, one script (events/lua/broker_take.lua) takes
up to TAKE_AT_ONCE more items from the same queue, within the prefetch limit, and records them in
kombu's own unacknowledged set server-side, in kombu's format (so kombu's restore and visibility
timeout treat them as their own); the acknowledgements of a finished batch go in one round trip.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from time import time
from typing import Any, ClassVar, cast

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import ResponseError

from events.lua import script as lua_script
from events.wire import first_event
from schemas.codes import ErrorCode
from schemas.events import escape_surrogates, nesting_depth
from workers.messages import BatchItem, unusable_item

log = logging.getLogger("sfsync.broker")

#: levels of nesting an envelope may have; Celery's own are 3 deep (headers.stamps and the like)
MAX_ENVELOPE_DEPTH = 16
#: body encodings kombu's Redis channel can decode (absent, utf-8 or base64)
BODY_ENCODINGS = ("base64", "utf-8")
INVALID_ENVELOPE = ErrorCode.INVALID_ENVELOPE
UNKNOWN_TASK = ErrorCode.UNKNOWN_TASK
#: messages taken in one round trip after each BRPOP (besides the one it read), within the prefetch
#: limit; 0 reads one message per round trip, as kombu does
TAKE_AT_ONCE = 100


@dataclass(frozen=True)
class Unreadable:
    """Why a queue item cannot be a message, and what it still tells about the event it carried."""

    code: str
    reason: str
    ids: dict[str, str | None] = field(default_factory=lambda: {
        "event_id": None, "event_type": None, "workspace_id": None})
    task_name: str | None = None
    task_id: str | None = None
    content_type: str | None = None

    def item(self, raw: Any, queue: str | None) -> BatchItem:
        """The item as the pipeline settles it: its problem is its outcome (it is dead-lettered as it came)."""
        return unusable_item(raw, self.ids, self.code, self.reason, task_name=self.task_name, queue=queue,
                             task_id=self.task_id, content_type=self.content_type)


#: called with (queue, raw item, why) for an item that cannot be a message
UnreadableHandler = Callable[[str, bytes, Unreadable], None]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _string_field(container: dict, name: str, where: str, *, required: bool) -> str | None:
    if name not in container or (container[name] is None and not required):
        return f"{where}{name}: missing" if required else None
    value = container[name]
    if not isinstance(value, str):
        return f"{where}{name}: must be a string, not {_type_name(value)}"
    return None


def _properties_problem(properties: Any) -> str | None:
    if not isinstance(properties, dict):
        return f"properties: must be an object, not {_type_name(properties)}"
    tag = properties.get("delivery_tag")
    # the tag is a key of Redis's unacked hash: a string (kombu sends a UUID) or an integer
    if "delivery_tag" not in properties:
        return "properties.delivery_tag: missing"
    if isinstance(tag, bool) or not isinstance(tag, (str, int)) or tag == "":
        return f"properties.delivery_tag: must be a non-empty string, not {_type_name(tag)}"
    info = properties.get("delivery_info")
    if "delivery_info" not in properties:
        return "properties.delivery_info: missing"
    if not isinstance(info, dict):
        return f"properties.delivery_info: must be an object, not {_type_name(info)}"
    for name in ("exchange", "routing_key"):
        problem = _string_field(info, name, "properties.delivery_info.", required=True)
        if problem:
            return problem
    encoding = properties.get("body_encoding")
    if encoding is not None and (not isinstance(encoding, str) or encoding.lower() not in BODY_ENCODINGS):
        return (f"properties.body_encoding: unknown encoding {encoding!r}; expected "
                f"{' or '.join(BODY_ENCODINGS)}")
    priority = properties.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        return f"properties.priority: must be an integer, not {_type_name(priority)}"
    return None


def _headers_problem(headers: Any) -> str | None:
    if not isinstance(headers, dict):
        return f"headers: must be an object, not {_type_name(headers)}"
    for name in ("task", "id"):
        problem = _string_field(headers, name, "headers.", required=True)
        if problem:
            return problem
    task_id = headers["id"]
    if not (0 < len(task_id) <= 255 and task_id.isascii() and task_id.isprintable() and " " not in task_id):
        return "headers.id: must be 1 to 255 printable ASCII characters without spaces"
    for name in ("shadow", "root_id", "parent_id", "group", "eta", "expires", "argsrepr", "kwargsrepr"):
        problem = _string_field(headers, name, "headers.", required=False)
        if problem:
            return problem
    for name in ("eta", "expires"):
        if isinstance(headers.get(name), str) and not _iso_datetime(headers[name]):
            return f"headers.{name}: not an ISO 8601 date-time: {headers[name][:40]!r}"
    limits = headers.get("timelimit")
    if limits is not None and not (isinstance(limits, list) and len(limits) == 2 and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in limits)):
        return "headers.timelimit: must be [soft, hard] seconds (numbers or null)"
    retries = headers.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        return f"headers.retries: must be an integer, not {_type_name(retries)}"
    return None


def _iso_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def envelope_problem(payload: Any, decode_body: Callable[[str, str], Any]) -> str | None:
    """Why a parsed queue item is not a message envelope kombu and Celery can use; None when it is one."""
    if not isinstance(payload, dict):
        return f"queue item is JSON {_type_name(payload)}, not a message envelope"
    if nesting_depth(payload, MAX_ENVELOPE_DEPTH) > MAX_ENVELOPE_DEPTH:
        return f"message envelope nested deeper than {MAX_ENVELOPE_DEPTH} levels"
    problem = _properties_problem(payload.get("properties"))
    if problem:
        return problem
    body = payload.get("body")
    if not isinstance(body, str):
        return f"body: must be a string, not {_type_name(body)}"
    for name in ("content-type", "content-encoding"):
        problem = _string_field(payload, name, "", required=False)
        if problem:
            return problem
    problem = _headers_problem(payload.get("headers"))
    if problem:
        return problem
    encoding = payload["properties"].get("body_encoding")
    if encoding:
        try:
            decode_body(body, encoding)
        except (ValueError, TypeError, binascii.Error, LookupError) as exc:
            return f"body: not valid {encoding}: {type(exc).__name__}"
    return None


def task_problem(payload: dict, queue: str, tasks_by_queue: dict[str, frozenset[str]]) -> str | None:
    """Why the task a message names may not run from the queue it came on; None when it may."""
    allowed = tasks_by_queue.get(queue)
    task = payload["headers"]["task"]
    if allowed is None or task in allowed:
        return None
    return (f"headers.task: {task!r} is not an sfsync event task; queue {queue} carries only "
            f"{', '.join(sorted(allowed))}")


def readable_ids(payload: Any) -> tuple[dict[str, str | None], str | None, str | None, str | None]:
    """(event ids, task name, task id, content type) of whatever part of an unusable item can be read."""
    ids: dict[str, str | None] = {"event_id": None, "event_type": None, "workspace_id": None}
    if not isinstance(payload, dict):
        return ids, None, None, None
    raw_headers = payload.get("headers")
    headers = raw_headers if isinstance(raw_headers, dict) else {}
    text = {name: escape_surrogates(value) if isinstance(value, str) else None for name, value in (
        ("task", headers.get("task")), ("id", headers.get("id")), ("content", payload.get("content-type")),
        ("event_id", headers.get("sfsync_event_id")))}
    ids["event_id"] = text["event_id"]
    event = _first_event(payload.get("body"))
    if isinstance(event, dict):
        for name, source in (("event_id", "id"), ("event_type", "type"), ("workspace_id", "workspace_id")):
            if isinstance(event.get(source), str):
                ids[name] = escape_surrogates(event[source])
    return ids, text["task"], text["id"], text["content"]


def _first_event(body: Any) -> Any:
    """The first event in a body, however it is encoded; None when there is none to read."""
    if not isinstance(body, str):
        return None
    for decode in (lambda b: base64.b64decode(b, validate=True), lambda b: b):
        try:
            decoded = json.loads(decode(body))
        except (ValueError, TypeError, RecursionError, binascii.Error):
            continue
        return first_event(decoded[0] if isinstance(decoded, list) and decoded else None)
    return None


class GuardedQoS(kombu_redis.QoS):
    """kombu's Redis QoS that knows which messages broker_take.lua already recorded as
    unacknowledged, and removes a batch's acknowledged messages from that record in one round trip."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: tags recorded by the take script whose message has not reached append() yet
        self.recorded: set[str] = set()
        #: tags acknowledged inside acks_together(), removed from Redis when it ends
        self._acked: list[Any] | None = None

    def append(self, message: Any, delivery_tag: Any) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # kombu's bookkeeping; Redis has the record
            return
        super().append(message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        if self._acked is None:
            super().ack(delivery_tag)
            return
        self._acked.append(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def drop_record(self, delivery_tag: str) -> None:
        """Forget a recorded message that never became one (it is dead-lettered instead)."""
        self.recorded.discard(delivery_tag)
        self._remove_from_indices(delivery_tag).execute()  # type: ignore[attr-defined]  # kombu's Redis QoS has it; the stubs omit it

    @contextmanager
    def acks_together(self) -> Iterator[None]:
        """Acknowledgements inside the block leave Redis's unacknowledged set in one round trip at its end."""
        if self._acked is not None:  # already inside one
            yield
            return
        self._acked = []
        try:
            yield
        finally:
            tags, self._acked = self._acked, None
            if tags:
                try:
                    with self.pipe_or_acquire() as pipe:
                        for tag in tags:
                            self._remove_from_indices(tag, pipe)  # type: ignore[attr-defined]  # as in drop_record
                        pipe.execute()
                except Exception:  # the messages come back after the visibility timeout; the ledger
                    # keeps their events from being written twice
                    log.exception("could not acknowledge %d message(s) in Redis; they are delivered again "
                                  "after the visibility timeout", len(tags))


@contextmanager
def acks_together(messages: Iterable[Any]) -> Iterator[None]:
    """Acknowledge `messages` inside the block: one round trip per channel when it ends, not one each."""
    with ExitStack() as stack:
        entered: set[int] = set()
        for message in messages:
            qos = getattr(getattr(message, "channel", None), "qos", None)
            if isinstance(qos, GuardedQoS) and id(qos) not in entered:
                entered.add(id(qos))
                stack.enter_context(qos.acks_together())
        yield


class GuardedChannel(kombu_redis.Channel):
    """kombu's Redis channel whose BRPOP read survives any item a queue may hold, and takes
    several messages per round trip."""

    QoS = GuardedQoS
    #: set by install(); without a handler an unreadable item is logged and dropped
    on_unreadable: UnreadableHandler | None = None
    #: set by install(): the only tasks each event queue may carry
    tasks_by_queue: ClassVar[dict[str, frozenset[str]]] = {}
    #: the take script bound to this channel (made at its first take); False once Redis refused it
    _take: Any = None
    #: queues a consumer reads without acknowledgements: read one message per round trip, as kombu does
    no_ack_queues: frozenset[str] | set[str] = frozenset()

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        # kombu keeps a consumer's no_ack only in its callback: the take script must know it, as a
        # message taken for a no_ack consumer (Celery's control replies) is never acknowledged, and
        # a record of it would be put back on its queue after every visibility timeout
        no_ack = kwargs["no_ack"] if "no_ack" in kwargs else bool(args and args[0])
        if no_ack:
            self.no_ack_queues = {*self.no_ack_queues, queue}
        return super().basic_consume(queue, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._tag_to_queue.values():
            self.no_ack_queues = self.no_ack_queues - {queue}
        return result

    @property
    def guarded_qos(self) -> GuardedQoS:
        """The channel's QoS, which is a GuardedQoS (the stubs type `qos` as kombu's virtual one)."""
        return cast(GuardedQoS, self.qos)

    def _brpop_read(self, **options):
        # kombu's own _brpop_read, with the envelope checked before it reaches _deliver
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            key, item = dest__item
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._deliver_checked(dest, item)
            self._take_more(key, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _take_more(self, key: bytes, queue: str) -> None:
        """After a BRPOP: up to TAKE_AT_ONCE more messages of the same list, recorded as unacknowledged
        by the take script, each then checked and delivered like the one BRPOP read."""
        room = self.qos.can_consume_max_estimate()
        count = TAKE_AT_ONCE if room is None else min(room, TAKE_AT_ONCE)
        if count <= 0 or self._take is False or self.global_keyprefix or queue in self.no_ack_queues:
            return  # with a key prefix, kombu's client rewrites key names: it reads one at a time
        with self.conn_or_acquire() as client:
            if self._take is None:
                self._take = lua_script(client, "broker_take")
            try:
                taken = self._take(keys=[key, self.unacked_index_key, self.unacked_key], args=[count, time()],
                                   client=client)
            except ResponseError as exc:  # a server without Lua's cjson, or a user without the commands
                log.warning("Redis refused the script that takes several messages at once (%s); reading one "
                            "message per round trip from now on", str(exc)[:200])
                self._take = False
                return
        qos = self.guarded_qos
        for item, tag in zip(taken[::2], taken[1::2]):
            recorded = bytes_to_str(tag) or None
            if recorded is not None:
                qos.recorded.add(recorded)
            self._deliver_checked(queue, item, recorded)

    def _deliver_checked(self, queue: str, item: bytes, recorded: str | None = None) -> None:
        """Check a queue item and deliver it; `recorded`: the tag the take script recorded it under."""
        payload: Any = None
        try:
            payload = loads(bytes_to_str(item))
            code, problem = INVALID_ENVELOPE, envelope_problem(payload, self.decode_body)
            if problem is None:
                code, problem = UNKNOWN_TASK, task_problem(payload, queue, type(self).tasks_by_queue)
        except RecursionError:
            code, problem = INVALID_ENVELOPE, (f"queue item nested too deeply to parse (a message envelope may "
                                               f"nest {MAX_ENVELOPE_DEPTH} levels)")
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            code, problem = INVALID_ENVELOPE, f"queue item is not JSON: {type(exc).__name__}: {str(exc)[:200]}"
        if problem is not None:
            if recorded is not None:
                self.guarded_qos.drop_record(recorded)
            self._unreadable(queue, item, payload, code, problem)
            return
        try:
            self.connection._deliver(payload, queue)
            if recorded is not None and recorded in self.guarded_qos.recorded:
                # no consumer of this channel took it in with acknowledgements (kombu put it back
                # on its queue itself, or nobody consumes that queue any more): no record is owed
                self.guarded_qos.drop_record(recorded)
        except Exception as exc:  # whatever else kombu or Celery trips over must not stop the worker
            # kombu counts KeyError as a connection error: Celery would reconnect and lose the item
            # connection_errors: set by kombu's Channel.__init__ from its transport (the stubs omit it)
            if isinstance(exc, self.connection_errors) and not isinstance(exc, KeyError):  # type: ignore[attr-defined]
                raise
            log.exception("a message from %s could not be taken in; it is dead-lettered", queue)
            self._forget(payload)
            if recorded is not None:
                self.guarded_qos.drop_record(recorded)
            self._unreadable(queue, item, payload, INVALID_ENVELOPE,
                             f"the worker could not take the message in: {type(exc).__name__}: {str(exc)[:200]}")

    def _forget(self, payload: dict) -> None:
        """Drop a message that failed half-way in from the unacked set: it is dead-lettered instead."""
        try:
            tag = payload["properties"]["delivery_tag"]
            # _delivered: an OrderedDict from QoS.__init__ on (None only in the stubs); kombu keys it by
            # whatever tag the envelope held, and ack() takes an integer tag as well as a string
            if isinstance(tag, (str, int)) and tag in self.qos._delivered:  # type: ignore[operator]
                self.qos.ack(tag)  # type: ignore[arg-type]
        except Exception:  # an unacked copy left behind only comes back once, and is dead-lettered again
            log.exception("could not drop an unusable message from the unacked set")

    def _unreadable(self, queue: str, item: Any, payload: Any, code: str, reason: str) -> None:
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogatepass")
        handler = type(self).on_unreadable
        try:
            ids, task_name, task_id, content_type = readable_ids(payload)
            why = Unreadable(code, escape_surrogates(reason), ids, task_name, task_id, content_type)
            if handler is not None:
                handler(queue, raw, why)
                return
        except Exception:  # the loop must survive even a failing dead-letter write
            log.exception("could not dead-letter an unreadable item from %s", queue)
        log.error("dropped an unreadable item from queue %s: %s", queue, escape_surrogates(reason))


class GuardedSentinelChannel(GuardedChannel, kombu_redis.SentinelChannel):
    """The guarded read loop on a connection through Redis Sentinel (sentinel:// broker URLs)."""


def install(on_unreadable: UnreadableHandler, tasks_by_queue: dict[str, frozenset[str]]) -> None:
    """Use the guarded channel for every Redis connection of this process (redis://, rediss://, sentinel://)."""
    GuardedChannel.on_unreadable = staticmethod(on_unreadable)
    GuardedChannel.tasks_by_queue = dict(tasks_by_queue)
    kombu_redis.Transport.Channel = GuardedChannel
    kombu_redis.SentinelTransport.Channel = GuardedSentinelChannel

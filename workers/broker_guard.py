"""A guard in kombu's Redis read loop: an item on a queue that is not a kombu message is dead-lettered.

kombu pops each item with BRPOP and parses its envelope before any Celery hook runs; an item
that is not JSON, or an envelope whose body cannot be decoded, raises out of the event loop
and Celery stops the whole worker ("Unrecoverable error"). One stray LPUSH — a broken
emitter, an operator's typo, an attacker with Redis access — would take a worker down and
strand its prefetched messages until the visibility timeout. The item is already off the
queue by then, so the guard keeps it in the dead-letter store instead.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger("sfsync.broker")

#: called with (queue, raw item, reason) for an item that cannot be a message
UnreadableHandler = Callable[[str, bytes, str], None]


def envelope_problem(payload: Any, decode_body: Callable[[str, str], Any]) -> str | None:
    """Why a parsed queue item is not a kombu message envelope; None when it is one."""
    if not isinstance(payload, dict):
        return f"queue item is JSON {type(payload).__name__}, not a message envelope"
    properties = payload.get("properties")
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        return "message envelope has no properties.delivery_tag"
    body = payload.get("body")
    if not isinstance(body, (str, bytes)):
        return "message envelope has no body"
    encoding = properties.get("body_encoding")
    if encoding:
        try:
            decode_body(body, encoding)
        except (ValueError, TypeError, binascii.Error, LookupError) as exc:
            return f"message body is not valid {encoding}: {type(exc).__name__}"
    return None


class GuardedChannel(kombu_redis.Channel):
    """kombu's Redis channel whose BRPOP read survives items that are not messages."""

    #: set by install(); without a handler an unreadable item is logged and dropped
    on_unreadable: UnreadableHandler | None = None

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
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                payload = loads(bytes_to_str(item))
                problem = envelope_problem(payload, self.decode_body)
            except (ValueError, TypeError, UnicodeDecodeError) as exc:
                payload, problem = None, f"queue item is not JSON: {type(exc).__name__}: {str(exc)[:200]}"
            if problem is not None:
                self._unreadable(dest, item, problem)
                return True
            self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _unreadable(self, queue: str, item: Any, reason: str) -> None:
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8", "replace")
        handler = type(self).on_unreadable
        try:
            if handler is not None:
                handler(queue, raw, reason)
                return
        except Exception:  # the loop must survive even a failing dead-letter write
            log.exception("could not dead-letter an unreadable item from %s", queue)
        log.error("dropped an unreadable item from queue %s: %s", queue, reason)


def install(on_unreadable: UnreadableHandler) -> None:
    """Use the guarded channel for every Redis connection of this process (redis:// and rediss://)."""
    GuardedChannel.on_unreadable = staticmethod(on_unreadable)
    kombu_redis.Transport.Channel = GuardedChannel

"""Leases of the messages a worker holds: renewed while it lives, so Redis's visibility timeout can stay short.

kombu's Redis transport notes each unacknowledged message's delivery time in a sorted set and
hands a message out again once that time is older than the visibility timeout. A worker holds
messages for a while (buffered, waiting for a pool process, being synced while Salesforce takes
its time), so it renews their delivery times every LEASE_RENEWAL seconds: a message of a worker
that died comes back to the others within about a minute, and one that is merely slow is never
handed out twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

log = logging.getLogger("sfsync.worker")

#: seconds between renewals of the delivery time of the messages a worker holds
LEASE_RENEWAL = 10.0
#: kombu's Redis transport keeps unacked messages' delivery times in this sorted set
UNACKED_INDEX = "unacked_index"


class Holdings:
    """Delivery tags of the messages this worker holds (across consumer restarts: a batch in flight
    outlives the connection it came on), whose leases the consumer renews."""

    def __init__(self) -> None:
        self.tags: set[str] = set()

    def __len__(self) -> int:
        return len(self.tags)

    def add(self, tag: str) -> None:
        self.tags.add(tag)

    def let_go(self, messages: Iterable[Any]) -> None:
        """Stop renewing these messages' leases: done before they are acknowledged or handed back,
        so that one that cannot be acknowledged now is not renewed for ever (it comes back after the
        visibility timeout instead)."""
        for message in messages:
            self.tags.discard(message.delivery_tag)

    def renew(self, client) -> None:
        if not self.tags:
            return
        now = time.time()
        try:
            # XX: renew only what kombu still lists as unacked (an acked tag must not come back)
            client.zadd(UNACKED_INDEX, {tag: now for tag in self.tags}, xx=True)
        except Exception:  # the next renewal tries again; Redis may be restarting
            log.warning("could not renew the leases of %d held messages", len(self.tags), exc_info=True)


def each_message(messages: Sequence[Any], act: Callable[[Any], Any], what: str) -> None:
    """`act` on every message, whatever one of them raises (one warning for all that failed)."""
    failed, last = 0, None
    for message in messages:
        try:
            act(message)
        except Exception as exc:  # noqa: BLE001 - a lost connection or a closed channel: Redis keeps the message
            failed, last = failed + 1, exc
    if failed:
        log.warning("could not %s %d of %d message(s) (%r); Redis hands them out again after the visibility "
                    "timeout, and the ledger keeps their events from being written twice", what, failed,
                    len(messages), last)


def shed(message: Any) -> None:
    """Let go of a held message's body, raw payload and headers once the consumer has taken it in.

    Acks and rejects need only the delivery tag and delivery info (Redis keeps the message itself
    for redelivery), and a worker holds its whole prefetch while batches fill: the copies were most
    of its memory. Celery's headers go too: each carries `argsrepr`, up to a kilobyte of the
    arguments' repr, and what sfsync reads of them was copied when the message was taken in.
    """
    for name, emptied in (("body", None), ("_raw", None), ("_decoded_cache", None), ("headers", {}),
                          ("properties", {})):
        try:
            setattr(message, name, emptied)
        except AttributeError:  # a message class without that attribute
            pass

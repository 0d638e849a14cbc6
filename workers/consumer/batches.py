"""What the consumer hands to the pool: a message as a pool process needs it, and a batch of one workspace's messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kombu.serialization import loads

from events.signing import HEADER as SIGNATURE_HEADER
from workers.consumer.policy import BatchKind


#: the content type of the bodies a held message keeps packed (the only one sfsync's workers accept)
PACKED_TYPE = "application/json"
#: the second hex digit of a JSON escape of printable ASCII (\u0020-\u007f)
_PRINTABLE_ESCAPE = frozenset(b"234567")


def kombu_may_differ(body: bytes) -> bool:
    """Whether kombu's JSON decoder could give `body` an answer of its own: its object hook turns an
    object whose keys are "__type__" and "__value__" into a date, bytes, ...; a key is "__type__" only
    if the text says so or spells one of its letters as an escape (printable ASCII). Byte searches
    only: a regular expression over a message's few kilobytes cost as much as decoding them."""
    if b"__type__" in body:
        return True
    at = body.find(b"\\u00")
    while at != -1:
        if at + 4 < len(body) and body[at + 4] in _PRINTABLE_ESCAPE:
            return True
        at = body.find(b"\\u00", at + 4)
    return False


def no_lone_surrogate(body: bytes) -> bool:
    """Whether no text JSON-decoded from `body` can hold a lone UTF-16 surrogate, when the body is
    decoded as UTF-8 strictly (kombu's decoder for a JSON body in UTF-8, see packable): UTF-8 cannot
    encode a surrogate, so only an escape \\uD800-\\uDFFF can make one. A body with such an escape
    (a valid pair included, an escaped backslash before "ud" too) gets False: it is walked."""
    return b"\\ud" not in body and b"\\uD" not in body


@dataclass
class QueuedMessage:
    """What a pool process needs of one message (picklable): its task id, arguments and routing,
    the batch task (and its queue) it came for, and its `sfsync_*` headers (the wire contract's
    own: see events/wire.py).

    A message the consumer takes in keeps its body `packed`, as the bytes it came in, and `args`
    empty: the consumer holds up to its whole prefetch while batches fill, and decoded events take
    about three times the memory of their JSON; they are decoded again, with the same decoder,
    in the pool process that syncs them (`arguments()`), which also spares the consumer pickling
    them for the pool.
    """

    id: str | None
    args: tuple
    kwargs: dict
    delivery_info: dict = field(default_factory=dict)
    task: str = ""
    queue: str = ""
    headers: dict = field(default_factory=dict)
    #: header sfsync_signature and the body's exact bytes, for a signing workspace's check (events/signing.py)
    signature: str | None = None
    body: bytes | None = None
    #: the consumer found every event in args within the event's depth and valid Unicode (set only
    #: by the consumer's own walk, never from the message): the pool does not walk them again
    shape_checked: bool = False
    #: the body as it came (JSON text of Celery's protocol 2, [args, kwargs, embed]); args is then empty
    packed: bytes | None = None
    #: events the message carries (one, or its bundle's size), counted when it was taken in
    events: int | None = None

    def arguments(self) -> tuple:
        """The message's positional arguments: as held, or decoded from its packed body as kombu decoded
        it when it arrived. Raises what kombu's decoder raises for a body it cannot read."""
        if self.packed is None:
            return self.args
        if not kombu_may_differ(self.packed):
            # kombu's decoder (a UTF-8 decode, then json.loads with its object hook) gives exactly this, in
            # half the time: the hook is a Python call for every object of every event
            return tuple(json.loads(self.packed.decode("utf-8"))[0])
        return tuple(loads(self.packed, PACKED_TYPE, "utf-8", accept={PACKED_TYPE})[0])


def packable(message: Any) -> bytes | None:
    """The body a consumer may hold instead of the message's decoded arguments, or None: JSON bytes,
    decoded as they will be decoded again (kombu has already decompressed a compressed body)."""
    body = getattr(message, "body", None)
    if isinstance(body, bytes) and getattr(message, "content_type", None) == PACKED_TYPE \
            and str(getattr(message, "content_encoding", None) or "utf-8").lower() == "utf-8":
        return body
    return None


def events_carried(args: Any) -> int:
    """Events a message with these positional arguments carries: one, or its bundle's size."""
    return len(args[0]) if args and isinstance(args[0], (list, tuple)) else 1


def signed_parts(headers: Any, body: Any) -> dict[str, Any]:
    """What a signing workspace's check needs of a message: its signature header and, when it has one,
    the body's exact bytes (kept only then: an unsigned message is checked without them)."""
    sent = headers.get(SIGNATURE_HEADER) if isinstance(headers, dict) else None
    if not isinstance(sent, str):
        return {}
    return {"signature": sent, "body": body if isinstance(body, bytes) else str(body).encode("utf-8")}


class Held(NamedTuple):
    """A message the consumer holds: kombu's (acknowledged or rejected when its batch ends) and its content."""

    message: Any
    queued: QueuedMessage


def events_in(messages: list[QueuedMessage]) -> int:
    """Events the messages carry (a message carries one event, or a bundle of them)."""
    return sum(m.events if m.events is not None else events_carried(m.args) for m in messages)


def batch_name(messages: list[QueuedMessage], default: str) -> str:
    """What monitors (Flower) show a batch as: the task its messages came for, the names of all
    of them joined by "+" when they came for several, `default` for a drain of the overflow alone."""
    names = sorted({m.task for m in messages if m.task})
    return "+".join(names) if names else default


@dataclass(eq=False)
class Batch:
    """One workspace's messages on their way to a pool process (none: a drain of its overflow).

    While it waits for its turn, what its workspace sends next joins it (`join`), up to `limit`
    messages: one contact lookup and one write for both, and no later than it would have gone
    anyway. Once started it takes nothing more.
    """

    workspace: str
    kind: BatchKind
    #: when it was handed to the dispatcher (the consumer's clock)
    submitted: float
    #: messages it may hold
    limit: int
    items: list[Held] = field(default_factory=list)
    started: bool = False

    @property
    def size(self) -> int:
        return len(self.items)

    @property
    def events(self) -> int:
        return events_in([held.queued for held in self.items])

    def queued(self) -> list[QueuedMessage]:
        return [held.queued for held in self.items]

    def join(self, more: list[Held]) -> list[Held]:
        """Take what fits of `more` while this batch waits; returns what is left over."""
        if self.started:
            return more
        room = max(self.limit - len(self.items), 0)
        self.items.extend(more[:room])
        return more[room:]

    def start(self) -> None:
        self.started = True

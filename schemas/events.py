"""The version-1 event contract Unify emitters publish, as pydantic models."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

#: bytes; a larger event is refused before parsing (a Salesforce email body is 131,072 chars)
MAX_EVENT_BYTES = 2_000_000
#: levels of nested objects and arrays an event may have (the event object itself is level 1; a
#: real event has about 4). Deeper data is refused: it serves no field, and Python's recursive
#: JSON, pickle and pydantic code fails on it somewhere between 200 and 1,000 levels.
MAX_EVENT_DEPTH = 64

EVENT_TYPES = ("email.sent", "email.replied", "contact.updated")

SEQUENCE_STATUSES = (
    "In Progress - Queued",
    "In Progress - Started",
    "In Progress - Paused",
    "In Progress - Blocked",
    "Completed",
    "Finished",
    "Excluded",
    "Opted Out",
    "Bounced",
    "Bounce Stopped (Email Invalid)",
    "Canceled",
    "Completed: Replied",
)


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def normalize_email(value: str) -> str:
    """Lower-case and trim an address; refuse what cannot be an address at all.

    Deliberately lenient: quotes, %, _ and backslashes occur in real addresses and
    must reach Salesforce matching (escaped there), not be rejected here.
    """
    if not isinstance(value, str):
        raise ValueError("an email address must be a string")
    address = value.strip().lower()
    if len(address) > 320:
        raise ValueError("an email address is at most 320 characters")
    if _CONTROL_CHARS.search(address):
        raise ValueError("an email address cannot contain control characters or line breaks")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in domain or "." not in domain.strip("."):
        raise ValueError(f"{value!r} is not an email address (expected local@domain.tld)")
    return address


EmailAddress = Annotated[str, AfterValidator(normalize_email)]


class _Open(BaseModel):
    """Unknown extra fields are kept, not rejected (the contract may grow)."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)


class Address(_Open):
    email: EmailAddress
    name: str | None = None


class Template(_Open):
    subject: str | None = None
    body: str | None = None


class Rep(_Open):
    email: EmailAddress | None = None
    salesforce_user_id: str | None = None
    name: str | None = None


class Person(_Open):
    emails: list[EmailAddress] = Field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    country: str | None = None
    phone: str | None = None


class Sequence(_Open):
    id: str | None = None
    name: str | None = None
    step: int | None = None
    status: str | None = None


class Play(_Open):
    id: str | None = None
    name: str | None = None
    sync_to_salesforce: bool = False


class EmailData(_Open):
    message_id: str = Field(min_length=1, max_length=998)
    in_reply_to: str | None = None
    thread_id: str | None = None
    origin: Literal["automated", "manual"]
    from_: Address = Field(alias="from")
    to: list[Address] = Field(min_length=1)
    cc: list[Address] = Field(default_factory=list)
    bcc: list[Address] = Field(default_factory=list)
    subject: str = ""
    body_html: str | None = None
    body_text: str | None = None
    template: Template | None = None
    sent_at: AwareDatetime
    rep: Rep | None = None
    person: Person = Field(default_factory=Person)
    sequence: Sequence | None = None
    play: Play | None = None

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class ContactUpdatedData(_Open):
    person: Person
    changes: dict[str, Any] = Field(default_factory=dict)
    play: Play | None = None


def _integer_version(value: Any) -> Any:
    # JSON true and 1.0 compare equal to 1 in Python; neither is what an emitter means by version 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be the integer 1, not {type(value).__name__} {value!r}")
    return value


class _Envelope(_Open):
    id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    version: Annotated[Literal[1], BeforeValidator(_integer_version)]
    workspace_id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    occurred_at: AwareDatetime


class EmailSent(_Envelope):
    type: Literal["email.sent"]
    data: EmailData

    @property
    def is_reply(self) -> bool:
        return False


class EmailReplied(_Envelope):
    type: Literal["email.replied"]
    data: EmailData

    @property
    def is_reply(self) -> bool:
        return True


class ContactUpdated(_Envelope):
    type: Literal["contact.updated"]
    data: ContactUpdatedData


Event = Annotated[Union[EmailSent, EmailReplied, ContactUpdated], Field(discriminator="type")]
EmailEvent = Union[EmailSent, EmailReplied]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def escape_surrogates(text: str) -> str:
    """`text` with each lone UTF-16 surrogate written as a `\\udxxx` escape: valid Unicode, storable anywhere."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _readable(value: Any) -> str | None:
    return escape_surrogates(value) if isinstance(value, str) else None


class InvalidEvent(ValueError):
    """An event that can never be synced as it stands; `reason` says exactly why.

    The ids and the reason are valid Unicode even when the event is not (lone surrogates are
    escaped), so the dead-letter store, the outcome log and the logs can always keep them.
    """

    def __init__(self, reason: str, *, code: str = "INVALID_EVENT", event_id: str | None = None,
                 event_type: str | None = None, workspace_id: str | None = None):
        reason = escape_surrogates(reason)
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.event_id = _readable(event_id)
        self.event_type = _readable(event_type)
        self.workspace_id = _readable(workspace_id)


def nesting_depth(value: Any, limit: int | None = None) -> int:
    """Levels of nested lists, tuples and dicts in `value` (a scalar is 0), without recursion.

    With `limit`, stops as soon as the depth passes it and returns limit + 1.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if limit is not None and depth > limit:
                return limit + 1
        stack.extend((child, depth) for child in children)
    return deepest


def _surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def shape_problem(raw: dict[str, Any]) -> str | None:
    """The first place (in document order) where an event is too deep or not valid Unicode; None if none."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(raw, ())]
    while stack:
        node, path = stack.pop()
        where = ".".join(str(p) for p in path) or "(event)"
        if len(path) >= MAX_EVENT_DEPTH and isinstance(node, (dict, list, tuple)):
            top = ".".join(str(p) for p in path[:3])
            return f"{top}...: event nested deeper than {MAX_EVENT_DEPTH} levels"
        if isinstance(node, str):
            at = _surrogate_at(node)
            if at is not None:
                return (f"{where}: contains a lone UTF-16 surrogate ({escape_surrogates(node[at])}) at character "
                        f"{at}; events must be valid Unicode")
        elif isinstance(node, dict):
            children = []
            for name, child in node.items():
                at = _surrogate_at(name) if isinstance(name, str) else None
                if at is not None:
                    return (f"{where}: a field name contains a lone UTF-16 surrogate "
                            f"({escape_surrogates(name[at])}) at character {at}; events must be valid Unicode")
                children.append((child, (*path, name)))
            stack.extend(reversed(children))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed([(child, (*path, n)) for n, child in enumerate(node)]))
    return None


def _describe_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        if loc and loc[0] in EVENT_TYPES:  # the union's tag adds nothing for the reader
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "(event)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_event(raw: bytes | str | dict[str, Any]) -> Event:
    """Parse and validate one event from JSON text or a decoded dict.

    Raises InvalidEvent with a one-line reason naming each bad field; never anything else.
    """
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"event is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,}",
                               code="EVENT_TOO_LARGE")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"event is not UTF-8 text ({exc.reason} at byte {exc.start})",
                               code="INVALID_JSON") from None
    if isinstance(raw, str):
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"event is {len(raw):,} characters; the limit is {MAX_EVENT_BYTES:,}",
                               code="EVENT_TOO_LARGE")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                               code="INVALID_JSON") from None
        except RecursionError:
            raise InvalidEvent(f"event nested deeper than {MAX_EVENT_DEPTH} levels (too deep even to read as "
                               f"JSON)", code="INVALID_JSON") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {type(raw).__name__}",
                           code="INVALID_EVENT")
    ids = {k: raw.get(k) if isinstance(raw.get(k), str) else None
           for k in ("id", "type", "workspace_id")}
    problem = shape_problem(raw)
    if problem is not None:
        raise InvalidEvent(problem, event_id=ids["id"], event_type=ids["type"], workspace_id=ids["workspace_id"])
    if "type" not in raw or not isinstance(raw.get("type"), str):
        raise InvalidEvent(f"type: {'Field required' if 'type' not in raw else 'must be a string'}; "
                           f"expected one of {', '.join(EVENT_TYPES)}", event_id=ids["id"],
                           workspace_id=ids["workspace_id"])
    if ids["type"] not in EVENT_TYPES:
        raise InvalidEvent(
            f"type: unknown event type {ids['type']!r}; expected one of {', '.join(EVENT_TYPES)}",
            code="UNKNOWN_EVENT_TYPE", event_id=ids["id"], event_type=ids["type"],
            workspace_id=ids["workspace_id"])
    try:
        return _EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise InvalidEvent(_describe_errors(exc), event_id=ids["id"], event_type=ids["type"],
                           workspace_id=ids["workspace_id"]) from None


def event_to_json(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict, in the contract's own field names."""
    return event.model_dump(mode="json", by_alias=True)


def email_addresses(event: EmailSent | EmailReplied) -> list[str]:
    """Every address that can identify the prospect of an email event, most specific first.

    For a send the prospect is among the recipients; for a reply it is the sender.
    """
    data = event.data
    ordered: list[str] = list(data.person.emails)
    if event.is_reply:
        ordered.append(data.from_.email)
    else:
        ordered.extend(a.email for a in data.to)
    seen: dict[str, None] = {}
    for address in ordered:
        seen.setdefault(address, None)
    return list(seen)

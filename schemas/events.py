"""The version-1 event contract Unify emitters publish (DESIGN §3), as pydantic models."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

#: bytes; a larger event is refused before parsing (a Salesforce email body is 131,072 chars)
MAX_EVENT_BYTES = 2_000_000

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


class _Envelope(_Open):
    id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    version: Literal[1]
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

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class InvalidEvent(ValueError):
    """An event that can never be synced as it stands; `reason` says exactly why."""

    def __init__(self, reason: str, *, code: str = "INVALID_EVENT", event_id: str | None = None,
                 event_type: str | None = None, workspace_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.event_id = event_id
        self.event_type = event_type
        self.workspace_id = workspace_id


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
        except (json.JSONDecodeError, RecursionError) as exc:
            detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(
                exc, json.JSONDecodeError) else "nested too deeply"
            raise InvalidEvent(f"event is not valid JSON: {detail}", code="INVALID_JSON") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {type(raw).__name__}",
                           code="INVALID_EVENT")
    ids = {k: raw.get(k) if isinstance(raw.get(k), str) else None
           for k in ("id", "type", "workspace_id")}
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
    except RecursionError:
        raise InvalidEvent("event is nested too deeply", event_id=ids["id"]) from None


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

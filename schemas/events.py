"""The version-1 event contract Unify emitters publish, as pydantic models."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
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

from schemas.codes import ErrorCode

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
        # the value is not repeated: an address that fails validation is still someone's
        raise ValueError("not an email address (expected local@domain.tld)")
    return address


EmailAddress = Annotated[str, AfterValidator(normalize_email), Field(
    description="An email address, local@domain.tld, at most 320 characters, no control characters; "
                "trimmed and lower-cased on arrival (quotes, %, _ and backslashes are allowed).",
    examples=["jane.doe@acme.example"])]


class _Open(BaseModel):
    """Unknown extra fields are kept, not rejected (the contract may grow)."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)


class Address(_Open):
    """A sender or recipient of an email."""

    email: EmailAddress
    name: str | None = Field(default=None, description="Display name, e.g. the part before <address>.",
                             examples=["Jane Doe"])


class Template(_Open):
    """The template an email was written from, variables unfilled; only read when no rendered body came."""

    subject: str | None = Field(default=None, description="Template subject, used only when `subject` is empty.",
                                examples=["Quick question, {{person.firstName}}"])
    body: str | None = Field(default=None, description="Template body, logged (with a note) only when neither "
                                                       "`body_html` nor `body_text` has text.")


class Rep(_Open):
    """The Unify user (sales rep) the email belongs to; decides the Task's owner in Salesforce."""

    email: EmailAddress | None = Field(
        default=None, description="The rep's address; the Task owner is the active Salesforce User with this "
                                  "address when `salesforce_user_id` is not given.")
    salesforce_user_id: str | None = Field(
        default=None, description="The rep's Salesforce User Id (005...); when given it is the Task's OwnerId.",
        examples=["005000000000001AAA"])
    name: str | None = Field(default=None, description="The rep's display name.")


class Person(_Open):
    """The prospect as Unify knows them; extra fields can be mapped as `person.<name>`."""

    emails: list[EmailAddress] = Field(
        default_factory=list,
        description="Every address of the person, most specific first; all of them are matched against "
                    "Contact.Email and the configured alternate email fields. The first one is the new "
                    "Contact's Email when a Sync-to-Salesforce play creates it.")
    first_name: str | None = Field(default=None, description="Mapped to Contact.FirstName by default.")
    last_name: str | None = Field(default=None, description="Mapped to Contact.LastName by default.")
    title: str | None = Field(default=None, description="Job title; mapped to Contact.Title by default.")
    company: str | None = Field(default=None, description="Company name (a mapping source, not mapped by default).")
    country: str | None = Field(default=None, description="Country name or ISO code ('Germany', 'DE', 'deu'); "
                                                          "converted to ISO 3166 alpha-2 for MailingCountryCode.")
    phone: str | None = Field(default=None, description="Mapped to Contact.Phone by default.")


class Sequence(_Open):
    """The Unify sequence an email belongs to."""

    id: str | None = Field(default=None, description="Unify's sequence id.")
    name: str | None = Field(default=None, description="The sequence's name.")
    step: int | None = Field(default=None, description="The step of the sequence this email is.")
    status: str | None = Field(
        default=None, description="The person's status in the sequence, one of Unify's values (see `sfsync "
                                  "mappings picklist-values`); the `sequence_status` mapping source.",
        examples=["In Progress - Started"])


class Play(_Open):
    """The Unify play that produced the event."""

    id: str | None = Field(default=None, description="Unify's play id.")
    name: str | None = Field(default=None, description="The play's name.")
    sync_to_salesforce: bool = Field(
        default=False, description="True when the play has Sync to Salesforce on: only then is a Contact "
                                   "created for a person no Contact matches (otherwise the event is skipped).")


class EmailData(_Open):
    """One email, as sent or received."""

    message_id: str = Field(min_length=1, max_length=998,
                            description="The RFC 5322 Message-ID; EmailMessage.MessageIdentifier (left out when "
                                        "over 255 characters) and the key that finds a half-written email again.",
                            examples=["<msg-2f1c@mail.unify.example>"])
    in_reply_to: str | None = Field(default=None, description="The Message-ID this email answers (kept with the "
                                                              "event, not written to Salesforce).")
    thread_id: str | None = Field(default=None, description="Unify's conversation id; EmailMessage.ThreadIdentifier "
                                                            "(a digest when too long).")
    origin: Literal["automated", "manual"] = Field(
        description="`automated` (a sequence step Unify sent) or `manual` (written by the rep). A manual send "
                    "is logged as a Task; an automated send, and every reply, as an EmailMessage when the org "
                    "has Enhanced Email (a Task otherwise).")
    from_: Address = Field(alias="from", description="The sender: the rep for email.sent, the prospect for "
                                                     "email.replied (then matched to find the Contact).")
    to: list[Address] = Field(min_length=1, description="The recipients, at least one; for email.sent each "
                                                        "address is matched to find the Contact.")
    cc: list[Address] = Field(default_factory=list, description="Copied recipients (logged, never matched).")
    bcc: list[Address] = Field(default_factory=list, description="Blind-copied recipients (logged, never matched).")
    subject: str = Field(default="", description="The rendered subject line.")
    body_html: str | None = Field(default=None, description="The fully rendered HTML body; preferred source of "
                                                            "the logged text.")
    body_text: str | None = Field(default=None, description="The rendered plain-text body; used when there is "
                                                            "no HTML body.")
    template: Template | None = Field(default=None, description="The template, a last resort when no rendered "
                                                                "body was sent.")
    sent_at: AwareDatetime = Field(description="When the email was sent, ISO 8601 with a time zone offset (or Z); "
                                               "EmailMessage.MessageDate and the Task's ActivityDate.",
                                   examples=["2026-11-26T18:03:00.412Z"])
    rep: Rep | None = Field(default=None, description="The rep; without one the Task is owned by the integration "
                                                      "user.")
    person: Person = Field(default_factory=Person, description="The prospect.")
    sequence: Sequence | None = Field(default=None, description="The sequence, for automated emails.")
    play: Play | None = Field(default=None, description="The play, when one produced the email.")

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class ContactUpdatedData(_Open):
    """What Unify learned about a person."""

    person: Person = Field(description="The person as Unify now knows them; `emails` find the Contact.")
    changes: dict[str, Any] = Field(
        default_factory=dict,
        description="The values that changed, by mapping source name (`title`, `sequence_status`, ...; any "
                    "other key is `person.<key>`); they win over the person's values.",
        examples=[{"title": "CRO", "sequence_status": "Completed"}])
    play: Play | None = Field(default=None, description="The play; with Sync to Salesforce on, a missing "
                                                        "Contact is created.")


def _integer_version(value: Any) -> Any:
    # JSON true and 1.0 compare equal to 1 in Python; neither is what an emitter means by version 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be the integer 1, not {_shape(value)}")
    return value


class _Envelope(_Open):
    id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
                    description="Unique id of the event (printable ASCII, no spaces); an event whose id was "
                                "already written is not written again.", examples=["evt_01JDX6K8T3"])
    version: Annotated[Literal[1], BeforeValidator(_integer_version)] = Field(
        description="Contract version; always the integer 1.")
    workspace_id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
                              description="The Unify workspace; a deployment only writes events of its own "
                                          "(SFSYNC_WORKSPACE_ID), others are dead-lettered (WORKSPACE_NOT_SERVED).",
                              examples=["ws_acme"])
    occurred_at: AwareDatetime = Field(description="When it happened in Unify, ISO 8601 with a time zone offset.",
                                       examples=["2026-11-26T18:03:00.412Z"])


class EmailSent(_Envelope):
    """An email a rep or a sequence sent to a prospect (queue `email.sent`)."""

    type: Literal["email.sent"]
    data: EmailData

    @property
    def is_reply(self) -> bool:
        return False


class EmailReplied(_Envelope):
    """A reply a prospect sent (queue `email.replied`)."""

    type: Literal["email.replied"]
    data: EmailData

    @property
    def is_reply(self) -> bool:
        return True


class ContactUpdated(_Envelope):
    """New or changed data about a person, written to their Contact (queue `contact.updated`)."""

    type: Literal["contact.updated"]
    data: ContactUpdatedData


Event = Annotated[Union[EmailSent, EmailReplied, ContactUpdated], Field(discriminator="type")]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def escape_surrogates(text: str) -> str:
    """`text` with each lone UTF-16 surrogate written as a `\\udxxx` escape: valid Unicode, storable anywhere."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shape(value: Any) -> str:
    """What kind of value was given, without repeating it (it may be anything, someone's address included)."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return type(value).__name__


def _readable(value: Any) -> str | None:
    return escape_surrogates(value) if isinstance(value, str) else None


class InvalidEvent(ValueError):
    """An event that can never be synced as it stands; `reason` says exactly why.

    The ids and the reason are valid Unicode even when the event is not (lone surrogates are
    escaped), so the dead-letter store, the outcome log and the logs can always keep them.
    """

    def __init__(self, reason: str, *, code: str = ErrorCode.INVALID_EVENT, event_id: str | None = None,
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

    With `limit`, stops as soon as the depth passes it and returns limit + 1. Only containers are
    put on the stack (an event's scalars outnumber its containers about five to one).
    """
    if not isinstance(value, (dict, list, tuple)):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if limit is not None and depth > limit:
                return limit + 1
        for child in (node.values() if isinstance(node, dict) else node):
            kind = child.__class__
            if kind is dict or kind is list or (kind is not str and isinstance(child, (dict, list, tuple))):
                stack.append((child, depth + 1))
    return deepest


def _surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _shape_ok(raw: Any) -> bool:
    """True when nothing in `raw` is too deep or invalid Unicode: the quick walk every event takes
    (shape_summary's), without the paths that only a refusal needs (see shape_problem)."""
    depth, text_ok = shape_summary(raw, MAX_EVENT_DEPTH)
    return text_ok and depth <= MAX_EVENT_DEPTH


def shape_summary(value: Any, limit: int) -> tuple[int, bool]:
    """(levels of nested lists, tuples and dicts in `value`, as nesting_depth with `limit`; whether
    every text in it, dict keys included, is valid Unicode): one walk for both.

    Only containers are put on the stack; text is checked where it is met, and a container's text
    keys or values are checked together (joined, one isascii() for all of them), which is what
    keeps this walk cheap next to validation. Stops as soon as the depth passes `limit` (limit + 1,
    False: the text is not known then); after an invalid text only the depth is worked out.
    """
    if value.__class__ is str:
        return 0, _surrogate_at(value) is None
    if not isinstance(value, (dict, list, tuple)):
        return 0, True
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if depth > limit:
                return limit + 1, False
        if isinstance(node, dict):
            if not _text_ok(node.keys()):
                return nesting_depth(value, limit), False
            children: Iterable[Any] = node.values()
        else:
            children = node
        texts: list[str] = []
        for child in children:
            kind = child.__class__
            if kind is str:
                texts.append(child)
            elif kind is dict or kind is list or isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
            elif isinstance(child, str) and _surrogate_at(child) is not None:
                return nesting_depth(value, limit), False
        if texts and not _text_ok(texts):
            return nesting_depth(value, limit), False
    return deepest, True


def _text_ok(texts: Iterable[Any]) -> bool:
    """No lone surrogate in any of `texts` (those that are str; a dict's keys may be anything)."""
    try:
        joined = "".join(texts)
    except TypeError:  # a key that is not text: checked one by one
        return all(_surrogate_at(text) is None for text in texts if isinstance(text, str))
    return joined.isascii() or _surrogate_at(joined) is None


def shape_problem(raw: dict[str, Any]) -> str | None:
    """The first place (in document order) where an event is too deep or not valid Unicode; None if none."""
    if _shape_ok(raw):
        return None
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


def parse_event(raw: bytes | str | dict[str, Any], *, shape_checked: bool = False) -> Event:
    """Parse and validate one event from JSON text or a decoded dict.

    `shape_checked`: a dict whose depth and text the caller has already found within bounds (the
    consumer's walk of the message it came in, see shape_summary); not walked again. JSON text is
    always walked once decoded.

    Raises InvalidEvent with a one-line reason naming each bad field; never anything else.
    """
    walked = shape_checked and isinstance(raw, dict)
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"event is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,}",
                               code=ErrorCode.EVENT_TOO_LARGE)
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"event is not UTF-8 text ({exc.reason} at byte {exc.start})",
                               code=ErrorCode.INVALID_JSON) from None
    if isinstance(raw, str):
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"event is {len(raw):,} characters; the limit is {MAX_EVENT_BYTES:,}",
                               code=ErrorCode.EVENT_TOO_LARGE)
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                               code=ErrorCode.INVALID_JSON) from None
        except RecursionError:
            raise InvalidEvent(f"event nested deeper than {MAX_EVENT_DEPTH} levels (too deep even to read as "
                               f"JSON)", code=ErrorCode.INVALID_JSON) from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {type(raw).__name__}",
                           code=ErrorCode.INVALID_EVENT)
    ids = {k: raw.get(k) if isinstance(raw.get(k), str) else None
           for k in ("id", "type", "workspace_id")}
    problem = None if walked else shape_problem(raw)
    if problem is not None:
        raise InvalidEvent(problem, event_id=ids["id"], event_type=ids["type"], workspace_id=ids["workspace_id"])
    if "type" not in raw or not isinstance(raw.get("type"), str):
        raise InvalidEvent(f"type: {'Field required' if 'type' not in raw else 'must be a string'}; "
                           f"expected one of {', '.join(EVENT_TYPES)}", event_id=ids["id"],
                           workspace_id=ids["workspace_id"])
    if ids["type"] not in EVENT_TYPES:
        raise InvalidEvent(
            f"type: unknown event type ({_shape(ids['type'])}); expected one of {', '.join(EVENT_TYPES)}",
            code=ErrorCode.UNKNOWN_EVENT_TYPE, event_id=ids["id"], event_type=ids["type"],
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

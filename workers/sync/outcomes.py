"""The outcome of one event: what happened to it, given by the step that knew (sync, gate, triage); turned into
a decision by workers/decide.py and carried out by workers/settle.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from workers.salesforce.errors import SalesforceError


@dataclass(frozen=True)
class Written:
    """The activity is in Salesforce (now, or already from an earlier delivery)."""

    sobject: str
    record_id: str
    #: the person's record: a Contact, or a Lead when `person_object` says so
    contact_id: str | None = None
    contact_created: bool = False
    duplicate: bool = False  # True when an earlier delivery had already written it
    warnings: tuple[str, ...] = ()
    person_object: str = "Contact"


@dataclass(frozen=True)
class Waiting:
    """How an email nobody in Salesforce matches may wait for its Contact (or Lead) to appear."""

    #: days it waits at most (counted from its first wait)
    days: float
    #: emails of the workspace that may wait at once; the oldest go first
    max_waiting: int


@dataclass(frozen=True)
class Skipped:
    """Nothing to write, by the rules (e.g. no contact and no Sync-to-Salesforce play)."""

    reason: str  # a stable, machine-readable reason such as "no_contact"
    detail: str = ""
    #: the email may wait for its person to appear, and be written then (None: skipped for good)
    wait: Waiting | None = None


@dataclass(frozen=True)
class Retry:
    """A transient failure: try again after `after` seconds (None: the backoff policy decides)."""

    error: SalesforceError
    after: float | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A permanent failure: keep the event for support to inspect and replay."""

    code: str
    message: str
    fields: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_error(cls, error: SalesforceError) -> "DeadLetter":
        return cls(code=error.code, message=error.message, fields=error.fields)


Outcome = Union[Written, Skipped, Retry, DeadLetter]

SKIPPED_NO_CONTACT = "no_contact"
SKIPPED_DUPLICATE_DELIVERY = "duplicate_delivery"
#: an EmailMessage with the email's Message-ID is already in the org (another integration logged it)
SKIPPED_ALREADY_LOGGED = "already_logged"

"""The error codes sfsync itself names: one enum, whose values are the strings stored and shown everywhere.

Salesforce's own codes (FIELD_CUSTOM_VALIDATION_EXCEPTION, UNABLE_TO_LOCK_ROW, ...) stay plain strings:
they are Salesforce's vocabulary, open-ended, and passed through as they come. Every code listed here
is a `str` (a StrEnum), so a member compares equal to its value, hashes like it, and is written to
Redis, dead letters, logs and metric labels as that value: data stored before this enum existed,
and tests comparing strings, read the same.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A code sfsync gives an outcome, a dead letter or a connection state."""

    # --- messages and events no batch can use (dead-lettered as they came)
    INVALID_EVENT = "INVALID_EVENT"
    INVALID_JSON = "INVALID_JSON"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    EVENT_TOO_LARGE = "EVENT_TOO_LARGE"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNDECODABLE_MESSAGE = "UNDECODABLE_MESSAGE"
    CONTENT_DISALLOWED = "CONTENT_DISALLOWED"
    UNKNOWN_TASK = "UNKNOWN_TASK"
    INVALID_ENVELOPE = "INVALID_ENVELOPE"
    INVALID_PARKED_ENTRY = "INVALID_PARKED_ENTRY"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    #: a message that came back more often than allowed, or that killed its worker while synced alone
    POISON_MESSAGE = "POISON_MESSAGE"
    # --- the workspace and its org (the gate's verdicts)
    #: the event names a workspace this deployment does not serve (dead-lettered: replay once it is registered)
    WORKSPACE_NOT_SERVED = "WORKSPACE_NOT_SERVED"
    #: the workspace is disabled: its events wait parked, no attempt spent, until it is enabled
    WORKSPACE_DISABLED = "WORKSPACE_DISABLED"
    #: the org's circuit breaker is open: its events wait parked until a probe finds it answering
    ORG_UNAVAILABLE = "ORG_UNAVAILABLE"
    #: the governor's verdict: usage of the daily API allowance is at or above the configured ceiling
    API_USAGE_CEILING = "API_USAGE_CEILING"
    #: no session could be had with the credentials held (or none are held)
    LOGIN_FAILED = "LOGIN_FAILED"
    #: the workspace holds no Salesforce connection at all (nothing to log in with)
    NOT_CONNECTED = "NOT_CONNECTED"
    #: Salesforce's code for a refused session; sfsync also gives it to a token that cannot be renewed
    INVALID_SESSION_ID = "INVALID_SESSION_ID"
    # --- transport, as sfsync names what it saw of Salesforce
    CONNECTION_ERROR = "CONNECTION_ERROR"
    TIMEOUT = "TIMEOUT"
    HTTP_5XX = "HTTP_5XX"
    UNEXPECTED_RESPONSE = "UNEXPECTED_RESPONSE"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"
    # --- sfsync's own work
    #: another worker is creating the event's contact: tried again shortly, no attempt spent
    CONTACT_BEING_CREATED = "CONTACT_BEING_CREATED"
    #: a field mapping that cannot work in this org
    INVALID_MAPPING = "INVALID_MAPPING"
    #: a batch failed unexpectedly (a bug or a lost Redis): its events are retried
    INTERNAL_ERROR = "INTERNAL_ERROR"
    #: an email waiting for its person to appear in Salesforce
    LATE_CONTACT = "LATE_CONTACT"


#: codes meaning the org cannot be reached with the credentials held: a connection problem, not the
#: event's, so the event waits (parked, no attempt spent) until a login works again
SESSION_CODES = frozenset({ErrorCode.INVALID_SESSION_ID, ErrorCode.LOGIN_FAILED})

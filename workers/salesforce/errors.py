"""Salesforce failures as one value type, and the one place that calls them transient or permanent."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from simple_salesforce.exceptions import SalesforceError as _SimpleSalesforceError

from schemas.codes import ErrorCode
from schemas.salesforce_hosts import HostNotAllowed

Kind = Literal["transient", "permanent"]

#: errorCodes worth trying again: the same request can succeed later.
TRANSIENT_CODES = frozenset({
    "REQUEST_LIMIT_EXCEEDED",
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "UNKNOWN_EXCEPTION",
    "INVALID_SESSION_ID",
    "QUERY_TIMEOUT",
    ErrorCode.CONNECTION_ERROR,
    ErrorCode.TIMEOUT,
    ErrorCode.HTTP_5XX,
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",  # a neighbour failed; this record itself was fine
    "API_CURRENTLY_DISABLED",
})

#: errorCodes that mean this record will never be written as it stands.
PERMANENT_CODES = frozenset({
    "INVALID_FIELD",
    "INVALID_FIELD_FOR_INSERT_UPDATE",
    "INVALID_TYPE",
    "MALFORMED_ID",
    "MALFORMED_QUERY",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    "REQUIRED_FIELD_MISSING",
    "STRING_TOO_LONG",
    "INVALID_CROSS_REFERENCE_KEY",
    "ENTITY_IS_DELETED",
    "DUPLICATE_VALUE",
    "FIELD_INTEGRITY_EXCEPTION",
    "INSUFFICIENT_ACCESS_OR_READONLY",
    "INVALID_EMAIL_ADDRESS",
    "JSON_PARSER_ERROR",
    "NOT_FOUND",
    "INVALID_SESSION_ID_PERSISTENT",
})

_LOCK_HINT = re.compile(r"UNABLE_TO_LOCK_ROW|unable to obtain exclusive access", re.IGNORECASE)


def classify_error(code: str, message: str = "", status: int | None = None) -> Kind:
    """Decide from Salesforce's errorCode (not the exception class) whether to retry."""
    if code in TRANSIENT_CODES:
        return "transient"
    if code == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY":
        # a trigger's failure, often wrapping a lock conflict: only that case is worth a retry
        return "transient" if _LOCK_HINT.search(message or "") else "permanent"
    if code in PERMANENT_CODES:
        return "permanent"
    if status is not None and (status >= 500 or status == 429):
        return "transient"
    return "permanent"


def is_daily_limit(code: str, message: str) -> bool:
    """REQUEST_LIMIT_EXCEEDED covers both a concurrency spike (seconds) and the daily quota (hours)."""
    return code == "REQUEST_LIMIT_EXCEEDED" and "TotalRequests" in (message or "")


@dataclass(frozen=True)
class SalesforceError(Exception):
    code: str
    message: str
    fields: tuple[str, ...] = field(default_factory=tuple)
    status: int | None = None

    def __str__(self) -> str:
        where = f" [{', '.join(self.fields)}]" if self.fields else ""
        return f"{self.code}: {self.message}{where}"

    @property
    def kind(self) -> Kind:
        return classify_error(self.code, self.message, self.status)

    @property
    def transient(self) -> bool:
        return self.kind == "transient"

    @property
    def daily_limit(self) -> bool:
        return is_daily_limit(self.code, self.message)

    @classmethod
    def from_body(cls, body: Any, status: int | None = None) -> "SalesforceError":
        """Build from a Salesforce error body: a list of {errorCode|statusCode, message, fields}."""
        item = body[0] if isinstance(body, list) and body else body
        if isinstance(item, dict):
            code = item.get("errorCode") or item.get("statusCode") or _status_code(status)
            return cls(code=str(code), message=str(item.get("message") or ""),
                       fields=tuple(item.get("fields") or ()), status=status)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        return cls(code=_status_code(status), message=text[:500], status=status)

    @classmethod
    def from_exception(cls, exc: BaseException) -> "SalesforceError":
        """Map whatever simple-salesforce or requests raised into a SalesforceError."""
        if isinstance(exc, SalesforceError):
            return exc
        if isinstance(exc, HostNotAllowed):
            # where the credentials would go is refused: a connection problem no retry fixes by itself
            return cls(code=ErrorCode.LOGIN_FAILED, message=str(exc))
        if isinstance(exc, _SimpleSalesforceError):
            return cls.from_body(exc.content, exc.status)
        if isinstance(exc, requests.Timeout):
            return cls(code=ErrorCode.TIMEOUT, message=f"Salesforce did not answer in time: {exc.__class__.__name__}")
        if isinstance(exc, requests.ConnectionError):
            return cls(code=ErrorCode.CONNECTION_ERROR, message=f"cannot reach Salesforce: {exc.__class__.__name__}")
        if isinstance(exc, requests.RequestException):
            return cls(code=ErrorCode.CONNECTION_ERROR, message=str(exc)[:300])
        raise TypeError(f"not a Salesforce failure: {exc!r}")


def _status_code(status: int | None) -> str:
    if status is None:
        return ErrorCode.UNKNOWN_ERROR
    if status >= 500:
        return ErrorCode.HTTP_5XX
    return f"HTTP_{status}"

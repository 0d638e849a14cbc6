"""Backoff is a pure function; transient vs permanent is decided by errorCode alone."""

from __future__ import annotations

import random

import pytest
import requests
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceRefusedRequest

from workers.backoff import compute_backoff
from workers.salesforce.errors import SalesforceError, classify_error


def test_given_attempts_when_no_jitter_then_exponential_up_to_the_cap():
    delays = [compute_backoff(n, base=2, cap=60, jitter=False) for n in range(1, 8)]
    assert delays == [2, 4, 8, 16, 32, 60, 60]


def test_given_jitter_when_drawn_then_within_bounds_and_never_zero():
    rng = random.Random(7)
    for attempt in range(1, 12):
        bound = min(300, 2 * 2 ** (attempt - 1))
        for _ in range(50):
            assert 0 < compute_backoff(attempt, base=2, cap=300, rng=rng) <= bound


def test_given_attempt_zero_when_computed_then_refused():
    with pytest.raises(ValueError):
        compute_backoff(0, base=1, cap=1)


@pytest.mark.parametrize("code, message, status, kind", [
    ("UNABLE_TO_LOCK_ROW", "", 400, "transient"),
    ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403, "transient"),
    ("SERVER_UNAVAILABLE", "", 503, "transient"),
    ("INVALID_SESSION_ID", "", 401, "transient"),
    ("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "trigger: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access", 400,
     "transient"),
    ("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "trigger: division by zero", 400, "permanent"),
    ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Subject must not say foo", 400, "permanent"),
    ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "", 400, "permanent"),
    ("STRING_TOO_LONG", "", 400, "permanent"),
    ("SOMETHING_NEW", "", 502, "transient"),
    ("SOMETHING_NEW", "", 400, "permanent"),
])
def test_given_an_error_code_when_classified_then_by_code_not_class(code, message, status, kind):
    assert classify_error(code, message, status) == kind


def test_given_simple_salesforce_exceptions_when_mapped_then_the_body_code_wins():
    lock = SalesforceMalformedRequest("u", 400, "Contact", [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "busy"}])
    limit = SalesforceRefusedRequest("u", 403, "Task", [{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                                         "message": "TotalRequests Limit exceeded."}])
    assert SalesforceError.from_exception(lock).transient
    assert SalesforceError.from_exception(limit).daily_limit
    assert SalesforceError.from_exception(requests.ConnectionError("refused")).code == "CONNECTION_ERROR"
    assert SalesforceError.from_exception(requests.ReadTimeout("slow")).transient

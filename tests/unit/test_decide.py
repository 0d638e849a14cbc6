"""The decision table: what the worker does with an event after each kind of outcome, without Redis."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.decide import (
    API_USAGE_CEILING,
    POISON_MESSAGE,
    Bury,
    Clock,
    Done,
    History,
    Park,
    HoldForRetry,
    RetryPolicy,
    WaitForContact,
    decide,
    poisoned,
)
from workers.salesforce.errors import SalesforceError
from workers.sync.engine import CONTACT_BEING_CREATED
from workers.sync.outcomes import DeadLetter, Retry, Skipped, Waiting, Written

NOW = 1_800_000_000.0
POLICY = RetryPolicy(max_attempts=8, budget=3600, backoff=2, backoff_max=300, max_deliveries=5, park_interval=900,
                     reconnect_interval=60)


class Lowest(random.Random):
    """The worst case of the random draws for an outage: every jittered wait as short as it can be."""

    def uniform(self, a, b):
        return a


class Highest(random.Random):
    def uniform(self, a, b):
        return b


def retry(code: str, message: str = "", after: float | None = None) -> Retry:
    return Retry(SalesforceError(code, message), after=after)


def at(now: float = NOW, rng: random.Random | None = None) -> Clock:
    return Clock(now, rng or Lowest())


@pytest.mark.parametrize("outcome, expected", [
    (Written("Task", "00T1", "0031"), Done("written")),
    (Written("Task", "00T1", "0031", duplicate=True), Done("duplicate")),
    (Skipped("no_contact"), Done("skipped_no_contact")),
    (Skipped("duplicate_delivery"), Done("skipped_duplicate_delivery")),
    (DeadLetter("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no", ("Subject",)),
     Bury("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no", ("Subject",), attempts=3)),
    (DeadLetter("INVALID_EVENT", "occurred_at: bad"), Bury("INVALID_EVENT", "occurred_at: bad", (), attempts=3)),
])
def test_given_a_final_outcome_when_decided_then_done_or_buried(outcome, expected):
    assert decide(outcome, History(attempt=2), POLICY, at()) == expected


@pytest.mark.parametrize("code, message", [
    ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    (API_USAGE_CEILING, "daily API usage 900/1000"),
])
def test_given_a_spent_quota_or_the_governor_when_decided_then_parked_for_the_park_interval_without_an_attempt(
        code, message):
    assert decide(retry(code, message), History(attempt=7), POLICY, at()) == Park(NOW + 900, code, message)


@pytest.mark.parametrize("code", ["INVALID_SESSION_ID", "LOGIN_FAILED"])
def test_given_a_session_that_cannot_be_renewed_when_decided_then_parked_not_failed(code):
    decision = decide(retry(code, "expired"), History(attempt=7), POLICY, at())
    assert decision == Park(NOW + 60, code, "expired")


def test_given_a_concurrency_limit_when_decided_then_a_retry_not_a_parking():
    decision = decide(retry("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded"), History(), POLICY,
                      at())
    assert isinstance(decision, HoldForRetry) and decision.attempt == 1


def test_given_another_workers_contact_creation_when_decided_then_republished_without_spending_an_attempt():
    decision = decide(retry(CONTACT_BEING_CREATED, after=3.0), History(attempt=4), POLICY, at())
    assert decision == HoldForRetry(3.0, 4, CONTACT_BEING_CREATED)


def test_given_a_long_wait_asked_for_when_decided_then_republished_after_it_not_parked():
    """Retries wait in Redis, not in a worker's memory, so a long backoff needs no parking."""
    assert decide(retry("UNABLE_TO_LOCK_ROW", after=1000), History(), POLICY, at()) == \
        HoldForRetry(1000, 1, "UNABLE_TO_LOCK_ROW")


def test_given_a_short_wait_asked_for_when_decided_then_republished_after_it():
    assert decide(retry("ENTITY_IS_DELETED", after=0.5), History(attempt=1), POLICY, at()) == \
        HoldForRetry(0.5, 2, "ENTITY_IS_DELETED")


@pytest.mark.parametrize("attempt, lowest, highest", [(0, 1, 2), (1, 2, 4), (2, 4, 8), (5, 32, 64), (8, 150, 300)])
def test_given_a_transient_failure_when_decided_then_the_wait_doubles_within_its_jitter(attempt, lowest, highest):
    low = decide(retry("HTTP_5XX"), History(attempt=attempt, first_failure_at=NOW), POLICY, at(rng=Lowest()))
    high = decide(retry("HTTP_5XX"), History(attempt=attempt, first_failure_at=NOW), POLICY, at(rng=Highest()))
    assert (low.after, high.after) == (lowest, highest)
    assert low.attempt == high.attempt == attempt + 1


def test_given_the_shortest_draws_every_time_when_an_outage_lasts_then_the_event_is_never_buried_before_the_budget():
    """The worst case of the random draws, not a typical one: all attempts spent as fast as possible."""
    history, now = History(), NOW
    while True:
        decision = decide(retry("SERVER_UNAVAILABLE"), history, POLICY, at(now))
        if isinstance(decision, Bury):
            break
        assert isinstance(decision, HoldForRetry)
        now += decision.after
        history = History(attempt=decision.attempt, first_failure_at=history.first_failure_at or NOW)
    assert now - NOW >= POLICY.budget
    assert decision.attempts > POLICY.max_attempts and "gave up after" in decision.message


def test_given_eight_quick_attempts_when_the_budget_has_not_passed_then_still_retried():
    decision = decide(retry("HTTP_5XX"), History(attempt=7, first_failure_at=NOW - 30), POLICY, at())
    assert isinstance(decision, HoldForRetry) and decision.attempt == 8


def test_given_attempts_and_budget_spent_when_decided_then_buried_with_the_count_and_span():
    decision = decide(retry("UNABLE_TO_LOCK_ROW", "locked"), History(attempt=7, first_failure_at=NOW - 7200),
                      POLICY, at())
    assert decision == Bury("UNABLE_TO_LOCK_ROW", "gave up after 8 attempts over 2.0 h: locked", (), attempts=8)


@pytest.mark.parametrize("history, expected", [
    (History(deliveries=5), None),
    (History(deliveries=6), "delivered 6 times"),
    (History(deliveries=2, strikes=1), None),
    (History(deliveries=2, strikes=2), "died 2 times"),
])
def test_given_a_delivery_history_when_checked_then_poison_is_buried(history, expected):
    verdict = poisoned(history, POLICY)
    if expected is None:
        assert verdict is None
    else:
        assert verdict.code == POISON_MESSAGE and expected in verdict.message


def test_given_an_attempt_count_far_past_the_limit_when_decided_then_the_wait_is_the_cap_not_an_overflow():
    """Attempts travel in the message's retry meta; any client can send a huge one."""
    policy = RetryPolicy(backoff=2.0, backoff_max=300.0, budget=3600)  # floats, as Settings gives them
    decision = decide(retry("HTTP_5XX"), History(attempt=100_000, first_failure_at=NOW), policy, at(rng=Highest()))
    assert isinstance(decision, HoldForRetry) and decision.after == 300


# --- emails waiting for their contact (late contacts) ----------------------------------------------

WAIT = Waiting(days=30, max_waiting=100)
DAY = 86_400.0


@pytest.mark.parametrize("outcome, history, expected", [
    # a first skip for no contact waits 30 days from now
    (Skipped("no_contact", wait=WAIT), History(), WaitForContact("skipped_no_contact", NOW, NOW + 30 * DAY, 100)),
    # skipped again after a release (its person still not matching): the wait keeps counting from its first skip
    (Skipped("no_contact", wait=WAIT), History(waiting_since=NOW - 10 * DAY),
     WaitForContact("skipped_no_contact", NOW - 10 * DAY, NOW + 20 * DAY, 100)),
    # ... and ends when its days are over
    (Skipped("no_contact", wait=WAIT), History(waiting_since=NOW - 30 * DAY), Done("skipped_no_contact")),
    # late contacts off (0 days), or a skip that never waits
    (Skipped("no_contact", wait=Waiting(days=0, max_waiting=100)), History(), Done("skipped_no_contact")),
    (Skipped("already_logged"), History(waiting_since=NOW - DAY), Done("skipped_already_logged")),
    # a waiting email written once its person appeared: written late; a copy already written: duplicate
    (Written("EmailMessage", "02s1", "0031"), History(waiting_since=NOW - DAY), Done("written_late")),
    (Written("EmailMessage", "02s1", "0031", duplicate=True), History(waiting_since=NOW - DAY), Done("duplicate")),
    (Written("EmailMessage", "02s1", "0031"), History(), Done("written")),
])
def test_given_a_skip_or_write_of_an_email_that_may_wait_when_decided_then_it_waits_or_ends(outcome, history, expected):
    assert decide(outcome, history, POLICY, at()) == expected


def test_given_a_waiting_email_that_fails_transiently_when_decided_then_it_is_retried_like_any_other():
    decision = decide(retry("UNABLE_TO_LOCK_ROW"), History(waiting_since=NOW - DAY), POLICY, at())
    assert isinstance(decision, HoldForRetry) and decision.attempt == 1


@settings(max_examples=300, deadline=None)
@given(days=st.floats(0, 400, allow_nan=False), waited=st.one_of(st.none(), st.floats(0, 500 * DAY)))
def test_property_an_email_waits_only_until_its_days_from_its_first_skip_are_over(days, waited):
    history = History(waiting_since=None if waited is None else NOW - waited)
    decision = decide(Skipped("no_contact", wait=Waiting(days, 10)), history, POLICY, at())
    since = NOW if waited is None else NOW - waited
    if days > 0 and since + days * DAY > NOW:
        assert decision == WaitForContact("skipped_no_contact", since, since + days * DAY, 10)
    else:
        assert decision == Done("skipped_no_contact")

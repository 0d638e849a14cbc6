"""The decision table: outcomes x histories x policies -> what the worker does with the event (one table, below)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.decide import (
    API_USAGE_CEILING,
    BREAKER_PARK,
    ORG_UNAVAILABLE,
    POISON_MESSAGE,
    WORKSPACE_DISABLED,
    WORKSPACE_NOT_SERVED,
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


QUICK = RetryPolicy(max_attempts=2, budget=0, backoff=1, backoff_max=10, max_deliveries=5, park_interval=300,
                    reconnect_interval=30)
WAIT = Waiting(days=30, max_waiting=100)
DAY = 86_400.0
L, H = Lowest(), Highest()


#: THE decision table: (outcome, history, policy, draws) -> decision. Every rule of `decide` has its rows here.
TABLE = [
    # --- final outcomes: done, or buried with the attempts spent
    ("written", Written("Task", "00T1", "0031"), History(attempt=2), POLICY, L, Done("written")),
    ("duplicate", Written("Task", "00T1", "0031", duplicate=True), History(attempt=2), POLICY, L, Done("duplicate")),
    ("skipped", Skipped("no_contact"), History(attempt=2), POLICY, L, Done("skipped_no_contact")),
    ("copy-skipped", Skipped("duplicate_delivery"), History(), POLICY, L, Done("skipped_duplicate_delivery")),
    ("dead-letter", DeadLetter("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no", ("Subject",)), History(attempt=2), POLICY, L,
     Bury("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no", ("Subject",), attempts=3)),
    ("invalid-event", DeadLetter("INVALID_EVENT", "occurred_at: bad"), History(attempt=2), POLICY, L,
     Bury("INVALID_EVENT", "occurred_at: bad", (), attempts=3)),
    ("poison", DeadLetter(POISON_MESSAGE, "delivered 6 times"), History(deliveries=6), POLICY, L,
     Bury(POISON_MESSAGE, "delivered 6 times", (), attempts=1)),
    ("unsigned", DeadLetter("INVALID_SIGNATURE", "unsigned"), History(), POLICY, L,
     Bury("INVALID_SIGNATURE", "unsigned", (), attempts=1)),
    ("not-served", DeadLetter(WORKSPACE_NOT_SERVED, "register it"), History(), POLICY, L,
     Bury(WORKSPACE_NOT_SERVED, "register it", (), attempts=1)),
    # --- what the org or the gate refuses: parked, no attempt spent, for the policy's interval
    ("spent-quota", retry("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), History(attempt=7), POLICY, L,
     Park(NOW + 900, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")),
    ("governor", retry(API_USAGE_CEILING, "daily API usage 900/1000"), History(attempt=7), POLICY, L,
     Park(NOW + 900, API_USAGE_CEILING, "daily API usage 900/1000")),
    ("governor-other-policy", retry(API_USAGE_CEILING, "900/1000"), History(), QUICK, L,
     Park(NOW + 300, API_USAGE_CEILING, "900/1000")),
    ("session-refused", retry("INVALID_SESSION_ID", "expired"), History(attempt=7), POLICY, L,
     Park(NOW + 60, "INVALID_SESSION_ID", "expired")),
    ("login-failed", retry("LOGIN_FAILED", "expired"), History(attempt=7), POLICY, L,
     Park(NOW + 60, "LOGIN_FAILED", "expired")),
    ("disabled", retry(WORKSPACE_DISABLED, "disabled"), History(attempt=3), POLICY, L,
     Park(NOW + 900, WORKSPACE_DISABLED, "disabled")),
    ("breaker-open", retry(ORG_UNAVAILABLE, "down"), History(attempt=3), QUICK, L,
     Park(NOW + BREAKER_PARK, ORG_UNAVAILABLE, "down")),
    # --- transient failures: held for a retry, spending an attempt (or not, for another worker's creation)
    ("concurrency-limit", retry("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded"), History(),
     POLICY, L, HoldForRetry(1, 1, "REQUEST_LIMIT_EXCEEDED")),
    ("contact-being-created", retry(CONTACT_BEING_CREATED, after=3.0), History(attempt=4), POLICY, L,
     HoldForRetry(3.0, 4, CONTACT_BEING_CREATED)),
    ("long-wait-asked", retry("UNABLE_TO_LOCK_ROW", after=1000), History(), POLICY, L,
     HoldForRetry(1000, 1, "UNABLE_TO_LOCK_ROW")),
    ("short-wait-asked", retry("ENTITY_IS_DELETED", after=0.5), History(attempt=1), POLICY, L,
     HoldForRetry(0.5, 2, "ENTITY_IS_DELETED")),
    *[(f"backoff-{attempt}-{name}", retry("HTTP_5XX"), History(attempt=attempt, first_failure_at=NOW), POLICY, rng,
       HoldForRetry(after, attempt + 1, "HTTP_5XX"))
      for attempt, lowest, highest in [(0, 1, 2), (1, 2, 4), (2, 4, 8), (5, 32, 64), (8, 150, 300)]
      for name, rng, after in (("low", L, lowest), ("high", H, highest))],
    ("attempts-spent-budget-not", retry("HTTP_5XX"), History(attempt=7, first_failure_at=NOW - 30), POLICY, L,
     HoldForRetry(128, 8, "HTTP_5XX")),
    ("attempts-and-budget-spent", retry("UNABLE_TO_LOCK_ROW", "locked"), History(attempt=7, first_failure_at=NOW - 7200),
     POLICY, L, Bury("UNABLE_TO_LOCK_ROW", "gave up after 8 attempts over 2.0 h: locked", (), attempts=8)),
    ("quick-policy-gives-up", retry("UNABLE_TO_LOCK_ROW", "locked"), History(attempt=1, first_failure_at=NOW - 90),
     QUICK, L, Bury("UNABLE_TO_LOCK_ROW", "gave up after 2 attempts over 2 min: locked", (), attempts=2)),
    ("internal-error", retry("INTERNAL_ERROR", "the batch failed"), History(attempt=2, first_failure_at=NOW), POLICY, L,
     HoldForRetry(4, 3, "INTERNAL_ERROR")),
    # attempts travel in the message's retry meta; any client can send a huge one: the wait is the cap
    ("attempt-overflow", retry("HTTP_5XX"), History(attempt=100_000, first_failure_at=NOW),
     RetryPolicy(backoff=2.0, backoff_max=300.0, budget=3600), H, HoldForRetry(300, 100_001, "HTTP_5XX")),
    # --- emails waiting for their contact (late contacts)
    ("first-skip-waits", Skipped("no_contact", wait=WAIT), History(), POLICY, L,
     WaitForContact("skipped_no_contact", NOW, NOW + 30 * DAY, 100)),
    ("skipped-again-keeps-counting", Skipped("no_contact", wait=WAIT), History(waiting_since=NOW - 10 * DAY), POLICY,
     L, WaitForContact("skipped_no_contact", NOW - 10 * DAY, NOW + 20 * DAY, 100)),
    ("wait-over", Skipped("no_contact", wait=WAIT), History(waiting_since=NOW - 30 * DAY), POLICY, L,
     Done("skipped_no_contact")),
    ("late-contacts-off", Skipped("no_contact", wait=Waiting(days=0, max_waiting=100)), History(), POLICY, L,
     Done("skipped_no_contact")),
    ("skip-that-never-waits", Skipped("already_logged"), History(waiting_since=NOW - DAY), POLICY, L,
     Done("skipped_already_logged")),
    ("written-late", Written("EmailMessage", "02s1", "0031"), History(waiting_since=NOW - DAY), POLICY, L,
     Done("written_late")),
    ("written-late-copy", Written("EmailMessage", "02s1", "0031", duplicate=True), History(waiting_since=NOW - DAY),
     POLICY, L, Done("duplicate")),
    ("waiting-email-fails", retry("UNABLE_TO_LOCK_ROW"), History(waiting_since=NOW - DAY), POLICY, L,
     HoldForRetry(1, 1, "UNABLE_TO_LOCK_ROW")),
]


@pytest.mark.parametrize("outcome, history, policy, rng, expected", [row[1:] for row in TABLE],
                         ids=[row[0] for row in TABLE])
def test_decision_table(outcome, history, policy, rng, expected):
    assert decide(outcome, history, policy, at(rng=rng)) == expected


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
    else:  # an outcome like any other: decide buries it
        assert verdict.code == POISON_MESSAGE and expected in verdict.message
        assert decide(verdict, history, POLICY, at()) == Bury(POISON_MESSAGE, verdict.message, (), attempts=1)


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

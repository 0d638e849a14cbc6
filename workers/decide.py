"""What happens to an event after one attempt to sync it: one pure decision for every outcome.

The domain says what happened (`Written`, `Skipped`, `Retry`, `DeadLetter`); the delivery
history says how often the event was tried and delivered. `decide` turns the two into what
the worker does next, and nothing else in the worker makes that choice:

- `Done`: nothing more to do (written, already written, or skipped by the rules);
- `HoldForRetry`: held in Redis (the retries lot) until its backoff has passed, then sent again;
- `Park`: held in Redis (the parked lot) until a time and until what parked it lets go (the gate), no
  attempt spent (a spent quota, the governor, a lost session, a disabled workspace, an org down);
- `Bury`: keep the event in the dead-letter store for support;
- `WaitForContact`: skipped for now, kept until its person appears in Salesforce (then written late).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Union

from schemas.codes import SESSION_CODES, ErrorCode
from workers.backoff import compute_backoff
from workers.sync.outcomes import DeadLetter, Outcome, Retry, Skipped, Written

#: seconds in a day (waits are set in days)
DAY = 86_400.0

#: the codes `decide` tells apart (one enum for every code sfsync names: schemas/codes.py)
API_USAGE_CEILING = ErrorCode.API_USAGE_CEILING
POISON_MESSAGE = ErrorCode.POISON_MESSAGE
WORKSPACE_NOT_SERVED = ErrorCode.WORKSPACE_NOT_SERVED
WORKSPACE_DISABLED = ErrorCode.WORKSPACE_DISABLED
ORG_UNAVAILABLE = ErrorCode.ORG_UNAVAILABLE
#: deaths of a worker while syncing a message (in a small group, then alone) that make it a culprit
CULPRIT_STRIKES = 2
#: seconds an event parked behind an open breaker waits at most before it is tried again anyway
BREAKER_PARK = 120.0


@dataclass(frozen=True)
class Done:
    """Nothing more to do; `label` is the outcome recorded: written, duplicate or skipped_<reason>."""

    label: str


@dataclass(frozen=True)
class HoldForRetry:
    """Hold the event in Redis for `after` seconds, then send it again; `attempt` failures spent so far."""

    after: float
    attempt: int
    code: str


@dataclass(frozen=True)
class Park:
    """Keep the event in Redis until `until` (epoch seconds); no attempt is spent."""

    until: float
    code: str
    message: str = ""


@dataclass(frozen=True)
class Bury:
    """Keep the event in the dead-letter store with Salesforce's error, for support to replay."""

    code: str
    message: str
    fields: tuple[str, ...] = ()
    attempts: int = 1


@dataclass(frozen=True)
class WaitForContact:
    """Skipped now (`label`), kept until a Contact (or Lead) with one of its addresses appears, or `until`."""

    label: str
    #: epoch seconds it began to wait (its first skip) and when it stops waiting
    since: float
    until: float
    #: emails of the workspace that may wait at once
    max_waiting: int


Decision = Union[Done, HoldForRetry, Park, Bury, WaitForContact]


@dataclass(frozen=True)
class RetryPolicy:
    """The limits `decide` applies; built from Settings by `RetryPolicy.from_settings`."""

    #: an event is dead-lettered only after this many failed attempts ...
    max_attempts: int = 8
    #: ... and once this many seconds have passed since its first failure: an outage that outlasts
    #: the attempts alone cannot exhaust an event's retries
    budget: float = 6 * 3600.0
    #: seconds: first retry delay, doubling each attempt
    backoff: float = 2.0
    #: seconds: the largest retry delay
    backoff_max: float = 300.0
    #: deliveries of one message that never finished before it is treated as poison
    max_deliveries: int = 5
    #: seconds parked work waits (spent quota, governor) before it is tried again
    park_interval: float = 900.0
    #: seconds an event whose org lost its session waits before its release is tried
    reconnect_interval: float = 60.0

    @classmethod
    def from_settings(cls, settings) -> "RetryPolicy":
        return cls(max_attempts=settings.max_attempts, budget=settings.retry_budget,
                   backoff=settings.retry_backoff, backoff_max=settings.retry_backoff_max,
                   max_deliveries=settings.max_deliveries,
                   park_interval=settings.park_interval)


@dataclass(frozen=True)
class History:
    """What is known of one event's earlier tries."""

    #: failed attempts before this one
    attempt: int = 0
    #: times the message carrying it has been delivered, this delivery included
    deliveries: int = 1
    #: times a worker died while syncing it after a redelivery
    strikes: int = 0
    #: epoch seconds of its first failure, or None before any
    first_failure_at: float | None = None
    #: epoch seconds it began waiting for its contact (it was skipped for none, then released), or None
    waiting_since: float | None = None


@dataclass(frozen=True)
class Clock:
    """The moment of the decision and the source of jitter (fixed in tests)."""

    now: float
    rng: random.Random = field(default_factory=random.Random)


def poisoned(history: History, policy: RetryPolicy) -> DeadLetter | None:
    """The outcome of a message that keeps killing its worker: dead-lettered before it is synced again."""
    if history.strikes >= CULPRIT_STRIKES:
        return DeadLetter(POISON_MESSAGE, f"the worker died {history.strikes} times while syncing this message, "
                                          f"the last time on its own (its batch neighbours were synced apart from it)")
    if history.deliveries > policy.max_deliveries:
        return DeadLetter(POISON_MESSAGE, f"delivered {history.deliveries} times without its batch finishing (the "
                                          f"worker died or was killed each time); limit SFSYNC_MAX_DELIVERIES="
                                          f"{policy.max_deliveries}")
    return None


def decide(outcome: Outcome, history: History, policy: RetryPolicy, clock: Clock) -> Decision:
    """What to do with an event after an attempt ended in `outcome`."""
    if isinstance(outcome, Written):
        if outcome.duplicate:
            return Done("duplicate")
        return Done("written_late" if history.waiting_since is not None else "written")
    if isinstance(outcome, Skipped):
        return _after_skip(outcome, history, clock)
    if isinstance(outcome, DeadLetter):
        return Bury(outcome.code, outcome.message, tuple(outcome.fields), attempts=history.attempt + 1)
    return _after_transient(outcome, history, policy, clock)


def _after_skip(outcome: Skipped, history: History, clock: Clock) -> Decision:
    """Skipped for good, or (an email whose person is not in Salesforce yet) waiting for them from its
    first skip on: a wait ends at its time limit, whatever released it in between."""
    label = f"skipped_{outcome.reason}"
    wait = outcome.wait
    if wait is None or wait.days <= 0:
        return Done(label)
    since = history.waiting_since if history.waiting_since is not None else clock.now
    until = since + wait.days * DAY
    if until <= clock.now:
        return Done(label)
    return WaitForContact(label, since, until, wait.max_waiting)


def _after_transient(outcome: Retry, history: History, policy: RetryPolicy, clock: Clock) -> Decision:
    error = outcome.error
    if error.daily_limit or error.code == API_USAGE_CEILING:
        return Park(clock.now + policy.park_interval, error.code, error.message)
    if error.code in SESSION_CODES:
        return Park(clock.now + policy.reconnect_interval, error.code, error.message)
    if error.code == WORKSPACE_DISABLED:
        return Park(clock.now + policy.park_interval, error.code, error.message)
    if error.code == ORG_UNAVAILABLE:
        return Park(clock.now + BREAKER_PARK, error.code, error.message)
    if error.code == ErrorCode.CONTACT_BEING_CREATED:
        # waiting for another worker's contact creation is not a failure; the creation lock
        # expires within a minute if its holder dies, so this cannot loop
        return HoldForRetry(outcome.after or 1.0, history.attempt, error.code)
    attempt = history.attempt + 1
    started = history.first_failure_at if history.first_failure_at is not None else clock.now
    if attempt >= policy.max_attempts and clock.now - started >= policy.budget:
        return Bury(error.code, f"gave up after {attempt} attempts over {_span(clock.now - started)}: "
                                f"{error.message}", tuple(error.fields), attempts=attempt)
    delay = outcome.after if outcome.after is not None else compute_backoff(
        attempt, base=policy.backoff, cap=policy.backoff_max, rng=clock.rng)
    return HoldForRetry(delay, attempt, error.code)


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"

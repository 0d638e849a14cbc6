"""Retry delays: exponential backoff with full jitter and a cap, as a pure function."""

from __future__ import annotations

import random


#: share of the exponential bound a jittered delay never goes below
JITTER_FLOOR = 0.5


def compute_backoff(attempt: int, *, base: float, cap: float, jitter: bool = True,
                    rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    Jitter spreads a herd of retries after an outage; it draws between half the exponential
    bound and the bound ("equal jitter"), so however the draws fall, the waits still double:
    with full jitter a run of small draws could spend every attempt within a short outage.
    The cap keeps a retry's countdown well under Redis's visibility timeout.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    bound = min(cap, base * (2 ** (attempt - 1)))
    if not jitter:
        return bound
    return (rng or random).uniform(bound * JITTER_FLOOR, bound)


#: share of Redis's visibility timeout a retry may wait as an in-flight (prefetched, unacked) message;
#: the rest covers the batch's own flush and write before the message is acked
COUNTDOWN_SHARE = 0.5


def max_countdown(visibility_timeout: float) -> float:
    """Seconds a retry may be held as a countdown message before it must be parked instead.

    A countdown message sits unacked in the worker; one waiting past the visibility timeout is
    delivered a second time, so longer waits go to the parking lot.
    """
    return max(visibility_timeout * COUNTDOWN_SHARE, 1.0)


def retry_delay(attempt: int, *, base: float, cap: float, visibility_timeout: float, jitter: bool = True,
                rng: random.Random | None = None) -> float:
    """The backoff for retry `attempt`, its cap kept under what a countdown message may wait."""
    return compute_backoff(attempt, base=base, cap=min(cap, max_countdown(visibility_timeout)), jitter=jitter,
                           rng=rng)

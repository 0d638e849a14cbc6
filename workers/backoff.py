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
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    bound = min(cap, base * (2 ** (attempt - 1)))
    if not jitter:
        return bound
    return (rng or random).uniform(bound * JITTER_FLOOR, bound)

"""Retry delays: exponential backoff with full jitter and a cap, as a pure function."""

from __future__ import annotations

import random


#: doublings of the first delay after which only the cap matters (keeps 2 ** n a finite float)
MAX_DOUBLINGS = 64
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
    # the exponent is capped: attempts travel in the message, so a huge count must not overflow
    bound = min(cap, base * 2.0 ** min(attempt - 1, MAX_DOUBLINGS))
    if not jitter:
        return bound
    return (rng or random).uniform(bound * JITTER_FLOOR, bound)

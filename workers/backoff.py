"""Retry delays: exponential backoff with full jitter and a cap, as a pure function."""

from __future__ import annotations

import random


def compute_backoff(attempt: int, *, base: float, cap: float, jitter: bool = True,
                    rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    Full jitter (a uniform draw up to the exponential bound) spreads a herd of retries after an
    outage; the cap keeps a retry's countdown well under Redis's visibility timeout.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    bound = min(cap, base * (2 ** (attempt - 1)))
    if not jitter:
        return bound
    draw = (rng or random).uniform(0, bound)
    return max(draw, min(bound, 0.5))  # never a zero wait: Salesforce just said no

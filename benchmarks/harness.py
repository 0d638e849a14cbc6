"""What every benchmark run shares: the workspace it writes as, its log line, bounded waits, percentiles."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from workers.local.stack import ManagedProcess

WORKSPACE = "ws_bench"
#: events per second below which a settle wait is declared stuck (bounds every wait)
SLOWEST_RATE = 40.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, logs: list[ManagedProcess]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tails = "\n".join(p.output()[-2500:] for p in logs)
    raise TimeoutError(f"{what} not done after {timeout:.0f}s; process output:\n{tails}")


def settle_timeout(n: int) -> float:
    return 60.0 + n / SLOWEST_RATE


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), round(pct / 100.0 * len(values) + 0.5)))
    return values[rank - 1]

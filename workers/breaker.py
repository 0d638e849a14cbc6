"""A circuit breaker per org: an outage is handled once for the org (a probe now and then), not by every event.

When two batches of one workspace within 30 seconds fail as a whole because its org does not
answer (5xx, connection refused, timeouts, API disabled), the breaker opens: that workspace's
events are parked without calling Salesforce and without spending an attempt. One worker at a time probes the org (one
cheap call) at growing intervals; when a probe succeeds the breaker closes and the parked events
go to the workspace's overflow at once, from which they are written a batch per turn (so the
backlog is written within seconds of the org's return without crowding the shared queues). Other
workspaces never wait for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis

from events.keys import BREAKERS_OPEN, key
from schemas.codes import ErrorCode
from workers.decide import ORG_UNAVAILABLE
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import Outcome, Retry, Skipped, Written

log = logging.getLogger("sfsync.breaker")

#: codes that say the org (not the record) failed
OUTAGE_CODES = frozenset({"SERVER_UNAVAILABLE", "API_CURRENTLY_DISABLED",  # Salesforce's
                          ErrorCode.CONNECTION_ERROR, ErrorCode.TIMEOUT, ErrorCode.HTTP_5XX})
#: batches failed as a whole within STRIKE_WINDOW seconds that open the breaker
STRIKES, STRIKE_WINDOW = 2, 30
#: seconds between probes: first, then doubled up to the last
PROBE_FIRST, PROBE_MAX = 2.0, 10.0


def is_outage(outcomes: Iterable[Outcome]) -> bool:
    """Every event of the batch failed because the org did not answer (and at least one event was tried)."""
    seen = False
    for outcome in outcomes:
        if isinstance(outcome, (Written, Skipped)):
            return False
        if isinstance(outcome, Retry):
            if outcome.error.code not in OUTAGE_CODES:
                return False
            seen = True
    return seen


class Breakers:
    """The breakers of every org, in Redis: `key(ws, "breaker")` {opened_at, probe_at, interval, reason}."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._open_cache: dict[str, tuple[float, bool]] = {}

    def is_open(self, workspace_id: str) -> bool:
        now = time.monotonic()
        cached = self._open_cache.get(workspace_id)
        if cached and now - cached[0] < 0.5:
            return cached[1]
        state = bool(self.redis.exists(key(workspace_id, "breaker")))
        self._open_cache[workspace_id] = (now, state)
        return state

    def strike(self, workspace_id: str) -> bool:
        """Count a batch the org failed as a whole; True when it is the second within STRIKE_WINDOW
        seconds (one lost connection under load is a hiccup for the retries, not an outage)."""
        name = key(workspace_id, "breaker", "strikes")
        pipe = self.redis.pipeline()
        pipe.set(name, 0, ex=STRIKE_WINDOW, nx=True)  # the window starts at the first strike
        pipe.incr(name)
        return int(pipe.execute()[1]) >= STRIKES

    def trip(self, workspace_id: str, reason: str) -> None:
        name = key(workspace_id, "breaker")
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hsetnx(name, "opened_at", f"{now:.3f}")
        pipe.hsetnx(name, "probe_at", f"{now + PROBE_FIRST:.3f}")
        pipe.hsetnx(name, "interval", str(PROBE_FIRST))
        pipe.hset(name, "reason", reason[:300])
        pipe.zadd(BREAKERS_OPEN, {workspace_id: now + PROBE_FIRST}, nx=True)
        pipe.execute()
        self._open_cache[workspace_id] = (time.monotonic(), True)

    def refusal(self, workspace_id: str) -> Retry:
        reason = self.redis.hget(key(workspace_id, "breaker"), "reason") or "the org does not answer"
        reason = reason.decode() if isinstance(reason, bytes) else reason
        return Retry(SalesforceError(ORG_UNAVAILABLE, f"the org of workspace {workspace_id} is unavailable; its "
                                                      f"events wait until a probe succeeds ({reason})"))

    def due(self, now: float | None = None) -> list[str]:
        """Workspaces whose breaker wants a probe now."""
        members = self.redis.zrangebyscore(BREAKERS_OPEN, "-inf", now or time.time())
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    def claim_probe(self, workspace_id: str) -> bool:
        """One worker probes at a time: the claim moves the next probe time (ZADD XX GT is atomic enough)."""
        name = key(workspace_id, "breaker")
        interval = float(self.redis.hget(name, "interval") or PROBE_FIRST)
        now = time.time()
        claimed = self.redis.set(key(workspace_id, "breaker", "probe"), "1", nx=True, ex=max(int(interval), 1))
        if not claimed:
            return False
        nxt = min(interval * 2, PROBE_MAX)
        pipe = self.redis.pipeline()
        pipe.hset(name, mapping={"probe_at": f"{now + interval:.3f}", "interval": str(nxt)})
        pipe.zadd(BREAKERS_OPEN, {workspace_id: now + interval}, xx=True)
        pipe.execute()
        return True

    def close(self, workspace_id: str) -> bool:
        """The org answered: close; True when this call closed it (the caller then releases the parked events)."""
        pipe = self.redis.pipeline()
        pipe.delete(key(workspace_id, "breaker"))
        pipe.delete(key(workspace_id, "breaker", "strikes"))
        pipe.zrem(BREAKERS_OPEN, workspace_id)
        closed = pipe.execute()[0]
        self._open_cache[workspace_id] = (time.monotonic(), False)
        return bool(closed)

    def state(self, workspace_id: str) -> dict[str, str] | None:
        raw = self.redis.hgetall(key(workspace_id, "breaker"))
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()} or None

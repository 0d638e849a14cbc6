"""A compact per-minute rollup of what the workers did, for the console's charts: counts, latency, backlog, API use.

One Redis hash per workspace and minute (`sfsync:{ws}:rollup:<minute>`, minute = Unix time // 60)
and one for the whole deployment (`sfsync:rollup:<minute>`), each expiring KEEP seconds after its
last write. Workers add to them once per batch (in the pipeline that records the batch's outcome
history), never per event; a sampler run by the workers' timers adds the backlog. Charts read
one hash per minute shown and never scan the outcome history.

Fields (short: an active workspace writes one hash a minute, kept for days):
  w s d r p o   events written, skipped, dead-lettered, retried, parked, other (counts)
  l0 .. l27     events written whose publish-to-write latency fell in LATENCY_BOUNDS[i] (counts)
  br bp bo      retries waiting, parked work, overflow entries (sampled; absent = 0 in a sampled minute)
  au al         the org's API calls used today and its daily allowance (sampled when a worker saw them)
and in the deployment's hash also:
  bq bu         messages on the event queues, and delivered but not yet acknowledged (sampled)
  am aw         the highest share of its daily allowance any org has used (per 10,000), and that workspace
  sm            "1" when a sampler ran in that minute (a minute without it is a gap, not zeros)
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from events.keys import PREFIX, key

MINUTE = 60
#: seconds a minute's hash is kept after its last write
KEEP = 3 * 86400
#: upper bounds (seconds) of the latency histogram's buckets; the last one catches everything longer
LATENCY_BOUNDS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120,
                                     180, 300, 600, 900, 1800, 3600, 7200, 21600, 86400, math.inf)
#: outcome kinds and their field in a minute's hash
KINDS = {"written": "w", "skipped": "s", "dead_lettered": "d", "retried": "r", "parked": "p", "other": "o"}
#: sampled backlog gauges and their field
BACKLOG = {"retries": "br", "parked": "bp", "overflow": "bo"}
SHARED_BACKLOG = {"queued": "bq", "unacked": "bu"}
SAMPLED = "sm"


def kind_of(outcome: str) -> str:
    """The chart's kind of a recorded outcome label: written, skipped, dead_lettered, retried, parked or other."""
    if outcome in ("written", "written_late", "duplicate"):
        return "written"
    if outcome.startswith("skipped_"):
        return "skipped"
    if outcome in ("dead_lettered", "retried", "parked"):
        return outcome
    return "other"


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency: the first whose bound holds it (a negative one, from clocks that
    disagree, counts as the first; NaN as the last)."""
    return min(bisect.bisect_left(LATENCY_BOUNDS, seconds), len(LATENCY_BOUNDS) - 1) if seconds == seconds \
        else len(LATENCY_BOUNDS) - 1


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (0-100) of a latency histogram, interpolated inside its bucket; None when empty.

    Precise to its bucket's width: about a quarter to a half of the value. The last bucket has no
    upper bound, so a percentile falling in it is reported as that bucket's lower bound.
    """
    total = sum(n for n in histogram.values() if n > 0)
    if total <= 0:
        return None
    rank = q / 100.0 * total
    seen = 0
    for index in range(len(LATENCY_BOUNDS)):
        n = histogram.get(index, 0)
        if n <= 0:
            continue
        if seen + n >= rank:
            low = LATENCY_BOUNDS[index - 1] if index else 0.0
            high = LATENCY_BOUNDS[index]
            if math.isinf(high):
                return low
            return low + (high - low) * min(max(rank - seen, 0.0) / n, 1.0)
        seen += n
    return LATENCY_BOUNDS[-2]


def minute_of(at: float) -> int:
    return int(at // MINUTE)


def workspace_key(workspace_id: str, minute: int) -> str:
    return key(workspace_id, "rollup", str(minute))


def deployment_key(minute: int) -> str:
    return f"{PREFIX}:rollup:{minute}"


@dataclass
class Minute:
    """One minute of a workspace (or of the deployment) as the charts read it."""

    start: float
    counts: dict[str, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    api_used: int | None = None
    api_limit: int | None = None
    api_top_share: float | None = None
    api_top_workspace: str | None = None
    #: a sampler ran in this minute (its backlog is known, zeros included)
    sampled: bool = False

    @classmethod
    def parse(cls, start: float, raw: Mapping[str, str], sampled: bool) -> "Minute":
        def number(name: str) -> int | None:
            try:
                return int(raw[name])
            except (KeyError, ValueError):
                return None

        minute = cls(start=start, sampled=sampled or raw.get(SAMPLED) == "1")
        minute.counts = {kind: number(f) or 0 for kind, f in KINDS.items()}
        minute.latency = {i: n for i in range(len(LATENCY_BOUNDS)) if (n := number(f"l{i}"))}
        if minute.sampled:
            minute.backlog = {name: number(f) or 0 for name, f in {**BACKLOG, **SHARED_BACKLOG}.items()}
        minute.api_used, minute.api_limit = number("au"), number("al")
        top = number("am")
        minute.api_top_share = top / 10_000 if top is not None else None
        minute.api_top_workspace = raw.get("aw") or None
        return minute


class Rollup:
    """Writes and reads the per-minute rollup (see the module's docstring for its keys and fields)."""

    def __init__(self, client: redis.Redis, keep: int = KEEP):
        self.redis, self.keep = client, keep

    # --- writing

    def add(self, pipe: Any, workspace_id: str, kinds: Mapping[str, int], latencies: Iterable[float] = (),
            now: float | None = None) -> None:
        """Queue on `pipe` one batch's outcome counts (by kind) and its written events' latencies (seconds)."""
        minute = minute_of(time.time() if now is None else now)
        fields: Counter[str] = Counter()
        for kind, n in kinds.items():
            if n:
                fields[KINDS.get(kind, "o")] += n
        for seconds in latencies:
            fields[f"l{latency_bucket(seconds)}"] += 1
        if not fields:
            return
        for name in (workspace_key(workspace_id, minute), deployment_key(minute)):
            for f, n in fields.items():
                pipe.hincrby(name, f, n)
            pipe.expire(name, self.keep)

    def sample(self, backlogs: Mapping[str, Mapping[str, int]], api: Mapping[str, tuple[int, int]],
               shared: Mapping[str, int], now: float | None = None) -> None:
        """Store one sample of the backlog: per workspace (retries, parked, overflow), the orgs' API
        readings seen since the last sample, and the shared queues; marks the minute as sampled."""
        minute = minute_of(time.time() if now is None else now)
        pipe = self.redis.pipeline(transaction=False)
        totals: Counter[str] = Counter()
        for ws, gauges in backlogs.items():
            values = {BACKLOG[name]: int(gauges.get(name, 0)) for name in BACKLOG}
            totals.update(values)
            if any(values.values()):  # a workspace with nothing waiting writes nothing (read as 0)
                pipe.hset(workspace_key(ws, minute), mapping=values)
                pipe.expire(workspace_key(ws, minute), self.keep)
            else:
                pipe.hdel(workspace_key(ws, minute), *BACKLOG.values())
        top: tuple[float, str] | None = None
        for ws, (used, limit) in api.items():
            pipe.hset(workspace_key(ws, minute), mapping={"au": int(used), "al": int(limit)})
            pipe.expire(workspace_key(ws, minute), self.keep)
            share = used / limit if limit > 0 else 0.0
            if top is None or share > top[0]:
                top = (share, ws)
        everything: dict[str, Any] = {**{BACKLOG[n]: totals.get(BACKLOG[n], 0) for n in BACKLOG},
                                      **{f: int(shared.get(n, 0)) for n, f in SHARED_BACKLOG.items()}, SAMPLED: "1"}
        if top is not None:
            everything.update(am=round(top[0] * 10_000), aw=top[1])
        pipe.hset(deployment_key(minute), mapping=everything)
        pipe.expire(deployment_key(minute), self.keep)
        pipe.execute()

    # --- reading

    def minutes(self, workspace_id: str | None, first: int, last: int) -> list[Minute]:
        """Minutes `first`..`last` (inclusive) of a workspace, or of the deployment when None: one HGETALL each."""
        if last < first:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for minute in range(first, last + 1):
            pipe.hgetall(deployment_key(minute))
            if workspace_id is not None:
                pipe.hgetall(workspace_key(workspace_id, minute))
        answers = pipe.execute()
        step = 1 if workspace_id is None else 2
        out = []
        for n, minute in enumerate(range(first, last + 1)):
            shared = answers[n * step]
            own = shared if workspace_id is None else answers[n * step + 1]
            out.append(Minute.parse(minute * MINUTE, own, sampled=shared.get(SAMPLED) == "1"))
        return out


@dataclass
class Point:
    """Several minutes together, as one point of a chart: counts summed, latency histograms merged,
    gauges the last sampled value (None where no sampler ran), API use the last reading seen."""

    start: float
    minutes: int
    counts: dict[str, int]
    latency: dict[int, int]
    backlog: dict[str, int] | None
    api_used: int | None
    api_limit: int | None
    api_top_share: float | None
    api_top_workspace: str | None

    def p(self, q: float) -> float | None:
        return percentile(self.latency, q)


def points(minutes: list[Minute], per: int) -> list[Point]:
    """Group consecutive minutes `per` at a time (the last group may be shorter)."""
    out = []
    for start in range(0, len(minutes), max(per, 1)):
        group = minutes[start:start + max(per, 1)]
        counts: Counter[str] = Counter()
        latency: Counter[int] = Counter()
        for m in group:
            counts.update(m.counts)
            latency.update(m.latency)
        sampled = [m for m in group if m.sampled]
        with_api = [m for m in group if m.api_used is not None]
        with_top = [m for m in group if m.api_top_share is not None]
        out.append(Point(start=group[0].start, minutes=len(group),
                         counts={k: counts.get(k, 0) for k in KINDS}, latency=dict(latency),
                         backlog=dict(sampled[-1].backlog) if sampled else None,
                         api_used=with_api[-1].api_used if with_api else None,
                         api_limit=with_api[-1].api_limit if with_api else None,
                         api_top_share=with_top[-1].api_top_share if with_top else None,
                         api_top_workspace=with_top[-1].api_top_workspace if with_top else None))
    return out

"""Counts and a short history of outcomes per workspace, so skips and failures are visible, not silent."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import redis

from events.keys import key
from events.lua import script
from events.rollup import Rollup, kind_of

#: entries kept in the recent-outcomes stream per workspace
HISTORY = 10_000
#: every workspace whose events have outcomes here (status and the console list them)
WORKSPACES = "sfsync:outcomes:workspaces"
#: outcomes after which an event needs nothing more (besides every `skipped_*`); not retried or parked
FINAL_OUTCOMES = frozenset({"written", "written_late", "duplicate", "dead_lettered"})


def is_final(outcome: str | None) -> bool:
    return outcome is not None and (outcome in FINAL_OUTCOMES or outcome.startswith("skipped_"))


class OutcomeLog:
    """No addresses or bodies are stored here: ids, types, outcomes and reasons only."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self.rollup = Rollup(client)

    def record(self, workspace_id: str, entries: Iterable[dict[str, Any]], latencies: Iterable[float] = (), *,
               served: bool = True) -> None:
        """Add a batch's outcomes of one workspace to its history, its counts and the per-minute rollup
        (with the publish-to-write `latencies`, in seconds, of the events it wrote): one round trip.
        `served` False for a workspace not served here (its events' dead letters are `_unrouted`'s),
        which WORKSPACES then does not list."""
        rows: list[list[str]] = []
        tally: Counter[tuple[str, str]] = Counter()
        for entry in entries:
            row: list[str] = []
            for k, v in entry.items():
                row += (k, "" if v is None else str(v))
            rows.append(row)
            tally[(str(entry.get("event_type") or ""), str(entry.get("outcome") or ""))] += 1
        if rows:
            pipe = self.redis.pipeline(transaction=False)
            # the entries and the counts (one per type and outcome) as one script call: the batch is
            # encoded once, not as a command with a dozen arguments per event
            script(self.redis, "outcomes_record")(
                keys=[key(workspace_id, "outcomes"), key(workspace_id, "counts")],
                args=[HISTORY, json.dumps(rows, ensure_ascii=False),
                      json.dumps([[f"{t}|{o}", str(n)] for (t, o), n in tally.items()], ensure_ascii=False)],
                client=pipe)
            kinds: Counter[str] = Counter()
            for (_, outcome), n in tally.items():
                kinds[kind_of(outcome)] += n
            now = time.time()
            self.rollup.add(pipe, workspace_id, kinds, latencies, now=now)
            pipe.hset(key(workspace_id, "last_activity"), mapping={"at": f"{now:.3f}"})
            if served:
                pipe.sadd(WORKSPACES, workspace_id)
            pipe.execute()

    def workspaces(self) -> set[str]:
        """The workspaces whose events have outcomes recorded (until a workspace is removed)."""
        return set(self.redis.smembers(WORKSPACES))

    def counts(self, workspace_id: str) -> dict[tuple[str, str], int]:
        raw = self.redis.hgetall(key(workspace_id, "counts"))
        counts: dict[tuple[str, str], int] = {}
        for k, v in raw.items():
            event_type, _, outcome = k.partition("|")
            counts[(event_type, outcome)] = int(v)
        return counts

    def mark(self, workspace_id: str) -> str:
        """A stream position: outcomes recorded after this call come after it (for `for_events(since=)`)."""
        last = self.redis.xrevrange(key(workspace_id, "outcomes"), count=1)
        if not last:
            return "-"
        ms, _, seq = last[0][0].partition("-")
        return f"{ms}-{int(seq) + 1}"

    def for_events(self, workspace_id: str, event_ids: set[str], scan: int = HISTORY,
                   since: str = "-") -> dict[str, dict[str, str]]:
        """The latest outcome of each of these events still in the history (after stream id `since`)."""
        found: dict[str, dict[str, str]] = {}
        for _, fields in self.redis.xrevrange(key(workspace_id, "outcomes"), max="+", min=since, count=scan):
            event_id = fields.get("event_id")
            if event_id in event_ids and event_id not in found:
                found[event_id] = fields
        return found

    def wait_final(self, workspace_id: str, event_ids: set[str], timeout: float, *, since: str = "-",
                   poll: float = 0.3, on_poll: Callable[[dict[str, dict[str, str]]], None] | None = None,
                   ) -> dict[str, dict[str, str]]:
        """Poll until every event has a final outcome (or `timeout` passes); returns those found.
        `on_poll` hears what is found so far after every look (a page showing progress)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {e: f for e, f in self.for_events(workspace_id, event_ids, since=since).items()
                     if is_final(f.get("outcome"))}
            if on_poll is not None:
                on_poll(found)
            if len(found) >= len(event_ids) or time.monotonic() >= deadline:
                return found
            time.sleep(poll)

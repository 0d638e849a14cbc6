"""Replaying dead letters, for the command line (`sfsync dlq replay`) and the web console alike: each event
back on its queue with fresh attempt meta (signed where its workspace signs), then a wait for outcomes."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

from events.deadletter import DeadLetterFilter, DeadLetterStore, ReplayResult, Unreplayable
from events.outcome_log import OutcomeLog
from events.publish import publisher_app, stamped
from events.redis_conn import connect
from events.signing import INVALID_SIGNATURE
from events.topology import ROUTES
from events.wire import named_workspace, queue_item, sfsync_headers
from schemas.deadletter import DeadLetterRecord
from workspaces.registry import RegistryError
from workspaces.secrets import SecretKeyError

#: seconds per unit of an age such as 90s, 15m, 2h, 3d, 1w
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_age(text: str) -> float:
    """Seconds in an age like `2h`, `3d`, `15m`, `90s`, `1w` or a bare number of seconds."""
    match = _AGE.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not an age; use a number with s, m, h, d or w (e.g. 2h, 3d)")
    return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]


SigningKeys = Callable[[str], "str | None"]


def registry_signing_keys(registry) -> SigningKeys:
    """workspace -> the key sfsync signs its replayed events with (None: unsigned, or its keys not readable)."""
    def key_of(ws: str) -> str | None:
        try:
            return registry.get(ws).signing_key
        except (RegistryError, SecretKeyError):
            return None

    return key_of


def republisher(broker_url: str, signing_keys: SigningKeys | None = None) -> Callable[[DeadLetterRecord], None]:
    """Puts a dead letter's original event back on its queue, with fresh attempt meta.

    A replay is a person's decision: for a workspace that signs its events, sfsync signs the replayed
    event with the workspace's first emitter key, except an event refused for its signature
    (INVALID_SIGNATURE): that one goes back as it came, unsigned, and is refused again."""
    app = publisher_app(broker_url)
    client = None
    by_task = {task: queue for task, queue in ROUTES.values()}

    def republish(record: DeadLetterRecord) -> None:
        if record.event is None:
            raise Unreplayable("the entry holds no event")
        if record.task_name in by_task:
            task_name, queue = record.task_name, by_task[record.task_name]
        elif record.event_type in ROUTES:
            task_name, queue = ROUTES[record.event_type]
        else:
            raise Unreplayable(f"no queue for task {record.task_name!r} / type {record.event_type!r}")
        meta = {**stamped()["sfsync"], "attempt": 0, "replay_of": record.id,
                "replayed_at": datetime.now(timezone.utc).isoformat()}
        # the workspace header the publisher would have set: read from the event itself
        headers = sfsync_headers(named_workspace([record.event]), 1)
        if record.event_id:
            headers["sfsync_event_id"] = record.event_id
        key = signing_keys(record.workspace_id) if signing_keys and record.workspace_id and \
            record.error_code != INVALID_SIGNATURE else None
        if key is None:
            app.send_task(task_name, args=[record.event], kwargs={"sfsync": meta}, queue=queue, exchange="",
                          routing_key=queue, headers=headers)
            return
        nonlocal client
        client = client or connect(broker_url)
        client.lpush(queue, queue_item(task_name, queue, [record.event], kwargs={"sfsync": meta}, headers=headers,
                                       signing_key=key))

    return republish


def wait_for_outcomes(outcomes: OutcomeLog, marks: dict[str, str], wanted: dict[str, set[str]], timeout: float,
                      poll: float = 0.5, on_outcomes: Callable[[dict[str, dict[str, str]]], None] | None = None,
                      ) -> dict[str, dict[str, str]]:
    """event id -> final outcome entry of replayed events, recorded after `marks`; missing ones are still
    pending. `on_outcomes` hears every outcome found so far, after each look."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, str]] = {}

    def heard(seen: dict[str, dict[str, str]]) -> None:
        if on_outcomes is not None:
            on_outcomes({**found, **seen})

    for workspace_id, ids in wanted.items():
        found.update(outcomes.wait_final(workspace_id, ids, max(deadline - time.monotonic(), 0),
                                         since=marks.get(workspace_id, "-"), poll=poll, on_poll=heard))
    return found


def summarize(result: ReplayResult, final: dict[str, str], waited: bool) -> dict[str, int]:
    """Counts support reads after a replay: replayed / written / failed again / skipped / still pending."""
    by = Counter(final.values())
    counts = {"replayed": len(result.replayed), "not_replayed": len(result.failed) + len(result.skipped)}
    if waited:
        with_ids = sum(1 for r in result.replayed if r.event_id and r.workspace_id)
        counts.update(written=by["written"] + by["written_late"] + by["duplicate"], failed_again=by["dead_lettered"],
                      skipped=sum(n for k, n in by.items() if k.startswith("skipped_")),
                      pending=max(with_ids - len(final), 0))
    return counts


def replay_selection(store: DeadLetterStore, selection: DeadLetterFilter, broker_url: str, *, wait: bool,
                     timeout: float, on_progress: Callable[[DeadLetterRecord], None] | None = None,
                     on_replayed: Callable[[ReplayResult], None] | None = None,
                     on_outcomes: Callable[[dict[str, dict[str, str]]], None] | None = None,
                     signing_keys: SigningKeys | None = None) -> tuple[ReplayResult, dict[str, int]]:
    """Replay what `selection` picks and, when `wait`, wait for the events' outcomes; the result and its counts.

    The command line and the web console both replay through here. `on_replayed` hears the
    result once every event is back on its queue, before the wait for outcomes starts;
    `on_outcomes` the outcome entries found so far (event id -> entry) during the wait and at its end.
    """
    outcomes = OutcomeLog(store.redis)
    workspaces_hit = {r.workspace_id for r in store.select(selection) if r.workspace_id}
    # positions in each outcome stream before anything is replayed: older outcomes of the same
    # events (the failures that dead-lettered them) must not be read as the replay's result
    marks = {ws: outcomes.mark(ws) for ws in workspaces_hit}
    result = store.replay(selection, republisher(broker_url, signing_keys), on_progress=on_progress)
    if on_replayed is not None:
        on_replayed(result)
    final: dict[str, str] = {}
    if wait and result.replayed:
        wanted: dict[str, set[str]] = {}
        for r in result.replayed:
            if r.event_id and r.workspace_id:
                wanted.setdefault(r.workspace_id, set()).add(r.event_id)
        final = {event_id: entry["outcome"] for event_id, entry in
                 wait_for_outcomes(outcomes, marks, wanted, timeout, on_outcomes=on_outcomes).items()}
    return result, summarize(result, final, waited=wait)

"""The many-workspace benchmark's traffic: Zipf shares, workspace ids, and bundles interleaved as an emitter sends them."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Iterator
from typing import TypeVar

from events.publish import bundles
from schemas.events import Event

T = TypeVar("T")

#: one message as `publish_many` sends it: (task name, queue, events, JSON bodies)
Bundle = tuple[str, str, list[Event], list[dict]]

#: seconds between the trickle publisher's sends (the events due in a tick go out together, bundled per workspace)
TICK = 0.1
#: events a message carries at most when many are published at once (events.publish.BUNDLE_EVENTS)
BUNDLE_EVENTS = 5


def workspace_ids(n: int) -> list[str]:
    """Workspace (and org) ids in rank order: ws01 is the busiest."""
    width = max(2, len(str(n)))
    return [f"ws{k:0{width}d}" for k in range(1, n + 1)]


def zipf_weights(n: int, s: float) -> list[float]:
    raw = [1.0 / k ** s for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def split(total: int, weights: list[float]) -> list[int]:
    """`total` events shared by weight (largest remainders), every workspace at least one."""
    exact = [total * w for w in weights]
    counts = [max(1, int(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    i = 0
    while sum(counts) < total:
        counts[order[i % len(order)]] += 1
        i += 1
    return counts


def owner_of(event_id: str) -> str:
    """The workspace of a benchmark event, from its id (`evt_bench_<tag>-<ws>_<n>`)."""
    return event_id.rsplit("_", 1)[0].rsplit("-", 1)[-1]


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of one figure over repeats."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "runs": [round(v, 4) for v in values]}


def interleave(per_workspace: dict[str, list[Event]], rng: random.Random) -> list[Bundle]:
    """Each workspace's events bundled as `publish_many` bundles them, the bundles of all workspaces
    interleaved at random (each workspace's own order kept): what an emitter serving many
    workspaces at once puts on the queues."""
    queues = {ws: bundles(evs) for ws, evs in per_workspace.items()}
    turns = [ws for ws, bs in queues.items() for _ in bs]
    rng.shuffle(turns)
    taken = {ws: 0 for ws in queues}
    out = []
    for ws in turns:
        out.append(queues[ws][taken[ws]])
        taken[ws] += 1
    return out


def trickle_ticks(ids: list[str], weights: list[float], rate: float, rng: random.Random) -> Iterator[list[str]]:
    """Steady traffic, one list per TICK: the workspaces of the events due in it (`rate` events/s
    over all), each drawn by weight; the trickle publisher sends them bundled per workspace."""
    owed = 0.0
    while True:
        owed += rate * TICK
        drawn = []
        while owed >= 1:
            drawn.append(rng.choices(ids, weights)[0])
            owed -= 1
        yield drawn


def bundled(items: Iterable[tuple[str, str, T]], max_events: int = BUNDLE_EVENTS) -> list[tuple[str, str, list[T]]]:
    """(queue, workspace, item) triples grouped into messages as `events.publish.bundles` groups
    events (one queue and one workspace a message, up to `max_events`, in order; a message goes
    out when full, the rest at the end): for traffic that is counted rather than built as events."""
    out: list[tuple[str, str, list[T]]] = []
    open_: dict[tuple[str, str], list[T]] = {}
    for queue, workspace, item in items:
        current = open_.get((queue, workspace))
        if current is not None and len(current) >= max_events:
            out.append((queue, workspace, current))
            current = None
        if current is None:
            current = open_[(queue, workspace)] = []
        current.append(item)
    out.extend((queue, workspace, current) for (queue, workspace), current in open_.items() if current)
    return out

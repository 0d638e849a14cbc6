"""The fair-share policy on a fake clock: the consumer's own code driven by the benchmark's traffic, in seconds.

    python -m benchmarks.simulate --scenario fairness [--flood-as no-header] [--json]
    python -m benchmarks.simulate --scenario isolation

What runs is real: the consumer's state and policy (every module of workers/consumer/, the
objects a worker runs) and the many-workspace benchmark's traffic (benchmarks/traffic.py: Zipf
shares over 50 workspaces, a trickle sent every 0.1 s bundled per workspace, a 50,000-event
flood published in bundles of 5, a 60 s outage of the busiest org). What is modelled, with costs
calibrated to the runs in docs/benchmarks.md (`Costs`): the Redis queues and overflows (with the
semantics of events/lua/: the sieve moves only messages whose `sfsync_workspace` header it is
asked for, a claim takes entries up to a batch of events), kombu's read loop (a message every
`read` seconds while fewer than the prefetch count are unacknowledged), the pool processes (a
batch takes `batch_fixed + batch_per_event × events`), the flood's publisher, and an org's
outage with the breaker (workers/breaker.py: two whole-batch failures within 30 s open it, its
events are parked, probes 2, 2, 4, 8, 10... s apart, a probe that answers releases them into the
overflow) and retries (released every second after their backoff).

So a change to the policy shows its effect on the benchmark's fairness and isolation figures
before the 5-minute benchmark confirms it (tests/unit/test_fair_share_simulation.py).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

from workers.consumer.dispatch import PoolShare
from workers.consumer.drains import claim_for
from workers.consumer.policy import Tunables
from workers.consumer.state import ConsumerSetup, ConsumerState

from benchmarks.traffic import TICK, bundled, trickle_ticks, workspace_ids, zipf_weights

#: the event queues and their batch tasks (a reply travels on its own queue, as in the benchmark's mix)
QUEUES = {"email.sent": "sfsync.email.sent", "email.replied": "sfsync.email.replied"}
#: share of the benchmark's events that are replies (benchmarks/load.py MIX)
REPLY_SHARE = 0.10
#: the breaker (workers/breaker.py): strikes within this many seconds open it; probes' first and last interval
STRIKES, STRIKE_WINDOW, PROBE_FIRST, PROBE_MAX = 2, 30.0, 2.0, 10.0
#: seconds between the prober's and the retry releaser's looks (workers/tasks.py)
PROBE_TICK, RETRY_RELEASE = 1.0, 1.0
#: the first retry's backoff bound, seconds (settings' retry_backoff)
RETRY_BACKOFF = 2.0


@dataclass(frozen=True)
class Costs:
    """Seconds things take on the benchmark's 2-core machine (calibrated to docs/benchmarks.md's runs)."""

    #: the consumer reading one message (kombu's BRPOP round trip and bookkeeping, sfsync's checks),
    #: and acknowledging one, on its share of the two cores while the pool and the publisher are busy
    read: float = 0.0028
    ack: float = 0.0004
    #: the sieve's script, per item it looks at (the consumer waits for it)
    scan: float = 0.0001
    #: a batch in a pool process: lookup, write and Redis round trips, then per event
    batch_fixed: float = 0.05
    batch_per_event: float = 0.0009
    #: a batch the org refuses (an outage), and one whose events are parked at once (breaker open)
    failed_batch: float = 0.06
    parked_batch: float = 0.02
    #: the flood's publisher, per message
    publish: float = 0.0018


@dataclass
class Scenario:
    """One run: the benchmark's fairness or isolation scenario, and how the flood is published."""

    name: str = "fairness"
    workspaces: int = 50
    zipf: float = 1.1
    #: the trickle of the other workspaces (fairness) or of all (isolation), events/s
    rate: float = 20.0
    linger: float = 5.0
    processes: int = 2
    batch_size: int = 200
    #: fairness: the busiest workspace's flood, and how it is published: "sfsync" (with the
    #: `sfsync_workspace` header: publish_many, and examples/node/emit.js alike), or "no-header"
    #: (an emitter that does not set it: the sieve leaves its messages to the read loop)
    burst: int = 50_000
    flood_as: str = "sfsync"
    #: isolation: seconds the busiest org is down, from 10 s in
    outage: float = 60.0
    seed: int = 5
    costs: Costs = field(default_factory=Costs)
    #: the policy's numbers under test
    tunables: Tunables = field(default_factory=Tunables)


class Loop:
    """A discrete-event loop on a fake clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(self.now + delay, fn)

    def every(self, interval: float, fn: Callable[[], None]) -> Any:
        handle = SimpleNamespace(cancelled=False)

        def fire() -> None:
            if not handle.cancelled:
                fn()
                self.after(interval, fire)

        self.after(interval, fire)
        return SimpleNamespace(cancel=lambda: setattr(handle, "cancelled", True))

    def run(self, until: Callable[[], bool], limit: float) -> None:
        while self._queue and not until() and self.now < limit:
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()


_tags = itertools.count()


class Message:
    """A queue item as the consumer sees it (kombu's message): one workspace's events."""

    __slots__ = ("body", "delivery_info", "delivery_tag", "events", "header", "headers", "queue", "sim", "workspace")

    def __init__(self, sim: "Simulation", workspace: str, queue: str, events: list[str], header: bool):
        self.sim, self.workspace, self.queue, self.events, self.header = sim, workspace, queue, events, header
        self.delivery_tag = f"t{next(_tags)}"
        self.headers = {"id": self.delivery_tag, "sfsync_events": len(events)}
        if header:
            self.headers["sfsync_workspace"] = workspace
        self.delivery_info = {"routing_key": queue}
        self.body = b""  # read only for a signed message's check, which the simulation does not sign

    def decode(self) -> tuple[list, dict, None]:
        # the body as the consumer parses it when the header is missing: the events name their workspace
        return [[{"workspace_id": self.workspace, "id": e} for e in self.events]], {}, None

    def ack(self) -> None:
        self.sim.busy(self.sim.costs.ack)
        self.sim.read_more()

    def reject(self, requeue: bool = False) -> None:
        self.sim.queues[self.queue].append(self)
        self.sim.read_more()


@dataclass
class Entry:
    """An overflow entry: a message spilled by the consumer or moved by the sieve."""

    events: list[str]


class Overflows:
    """The overflows in Redis, with events/lua/'s semantics: the sieve, spills, claims."""

    def __init__(self, sim: "Simulation", queues: dict[str, deque]):
        self.sim = sim
        self.queues = queues
        self.lists: dict[str, deque[Entry]] = {}
        self.moved: dict[str, int] = {}

    @staticmethod
    def entry(task: str, queue: str, task_id: str | None, args: Any, kwargs: Any, events: int = 1,
              headers: Any = None, **signed: Any) -> Entry:
        return Entry([e["id"] for e in args[0]])

    def spill(self, entries: list[tuple[str, Entry]]) -> None:
        for ws, entry in entries:
            self.lists.setdefault(ws, deque()).append(entry)

    def sieve(self, queue: str, workspaces: list[str], scan: int) -> tuple[dict[str, int], int]:
        items = self.queues[queue]
        taken = [items.pop() for _ in range(min(scan, len(items)))]  # oldest first (the taken end is the right)
        self.sim.busy(len(taken) * self.sim.costs.scan)
        wanted, counts, keep = set(workspaces), {ws: 0 for ws in workspaces}, []
        for message in taken:
            if message.header and message.workspace in wanted:
                self.lists.setdefault(message.workspace, deque()).append(Entry(message.events))
                counts[message.workspace] += 1
            else:
                keep.append(message)
        for message in reversed(keep):
            items.append(message)
        for ws, n in counts.items():
            self.moved[ws] = self.moved.get(ws, 0) + n
        return counts, len(items)

    def depth(self, queue: str) -> int:
        return len(self.queues[queue])

    def workspaces(self) -> list[str]:
        return list(self.lists)

    def pending(self, workspaces: list[str]) -> dict[str, int]:
        for ws in [ws for ws in workspaces if ws in self.lists and not self.lists[ws]]:
            del self.lists[ws]
        return {ws: len(self.lists[ws]) for ws in workspaces if self.lists.get(ws)}

    def claim(self, ws: str, n: int, at_least_one: bool) -> list[Entry]:
        entries, taken, events = self.lists.get(ws, deque()), [], 0
        while entries and (events + len(entries[0].events) <= n or (at_least_one and not taken)):
            entry = entries.popleft()
            taken.append(entry)
            events += len(entry.events)
        return taken


@dataclass
class Org:
    """A workspace's org and its breaker."""

    down_from: float = math.inf
    down_until: float = -math.inf
    strikes: list[float] = field(default_factory=list)
    open_since: float | None = None
    probe_at: float = math.inf
    interval: float = PROBE_FIRST
    parked: list[str] = field(default_factory=list)
    calls_while_down: int = 0

    def down(self, now: float) -> bool:
        return self.down_from <= now < self.down_until


class Simulation:
    """The consumer, its pool and Redis, on one fake clock."""

    def __init__(self, scenario: Scenario):
        self.s = scenario
        self.costs = scenario.costs
        self.loop = Loop()
        self.rng = random.Random(scenario.seed)
        self.ids = workspace_ids(scenario.workspaces)
        self.queues: dict[str, deque[Message]] = {queue: deque() for queue in QUEUES}
        self.cycle = deque(QUEUES)
        self.store = Overflows(self, self.queues)
        self.orgs: dict[str, Org] = {ws: Org() for ws in self.ids}
        self.published: dict[str, tuple[str, float]] = {}
        self.written: dict[str, float] = {}
        #: per workspace, its events published and not yet written
        self.unwritten: dict[str, int] = {}
        self.serial = itertools.count()
        self.reading = False
        #: until when the consumer is busy (acknowledging, waiting for the sieve's script)
        self.busy_until = 0.0
        pool = SimpleNamespace(num_processes=scenario.processes, apply_async=self.apply_async)
        self.consumer = SimpleNamespace(pool=pool, qos=SimpleNamespace(value=scenario.batch_size * 3 * scenario.processes),
                                        event_dispatcher=None, connection=object(),
                                        timer=SimpleNamespace(call_repeatedly=self.loop.every))
        setup = ConsumerSetup(lingers=lambda _ws: scenario.linger, overflow=lambda: self.store,
                              clock=lambda: self.loop.now, tunables=scenario.tunables)
        self.tasks = {queue: SimpleNamespace(name=name, queue=queue, flush_every=scenario.batch_size,
                                             flush_interval=scenario.linger) for queue, name in QUEUES.items()}
        first, *others = self.tasks.values()
        self.state = ConsumerState(first, self.consumer, setup, PoolShare.of(self.consumer))
        for task in others:
            self.state.add(task)
        self.receivers = {queue: self.state.receiver(task) for queue, task in self.tasks.items()}
        self.loop.every(PROBE_TICK, self.probe)

    # --- publishing -------------------------------------------------------------------------

    def publish(self, workspace: str, count: int, header: bool = True) -> None:
        """`count` events of `workspace`, as one publisher call bundles them (a reply in ten on its own queue)."""
        items = [("email.replied" if self.rng.random() < REPLY_SHARE else "email.sent", workspace,
                  f"{workspace}_{next(self.serial)}") for _ in range(count)]
        for queue, ws, events in bundled(items):
            self.push(Message(self, ws, queue, events, header))

    def push(self, message: Message) -> None:
        for event in message.events:
            if event not in self.published:
                self.published[event] = (message.workspace, self.loop.now)
                self.unwritten[message.workspace] = self.unwritten.get(message.workspace, 0) + 1
        self.queues[message.queue].appendleft(message)
        self.read_more()

    def trickle(self, ids: list[str], weights: list[float], rate: float, until: Callable[[], bool]) -> None:
        ticks = trickle_ticks(ids, weights, rate, random.Random(self.s.seed))

        def tick() -> None:
            if until():
                return
            counts: dict[str, int] = {}
            for ws in next(ticks):
                counts[ws] = counts.get(ws, 0) + 1
            for ws, n in counts.items():
                self.publish(ws, n)
            self.loop.after(TICK, tick)

        tick()

    def flood(self, workspace: str, events: int, done: Callable[[float], None]) -> None:
        """One workspace's burst, message after message at the publisher's pace."""
        header = self.s.flood_as != "no-header"
        items = [("email.replied" if self.rng.random() < REPLY_SHARE else "email.sent", workspace,
                  f"{workspace}_{next(self.serial)}") for _ in range(events)]
        messages = deque(bundled(items))

        def send() -> None:
            queue, ws, ids = messages.popleft()
            self.push(Message(self, ws, queue, ids, header))
            if messages:
                self.loop.after(self.costs.publish, send)
            else:
                done(self.loop.now)

        send()

    # --- the consumer's read loop -------------------------------------------------------------

    def busy(self, seconds: float) -> None:
        self.busy_until = max(self.busy_until, self.loop.now) + seconds

    def read_more(self) -> None:
        if not self.reading:
            self.reading = True
            self.loop.after(0.0, self.read)

    def read(self) -> None:
        """kombu's loop: a message from the next non-empty queue, while fewer than the prefetch count are unacked."""
        if self.loop.now < self.busy_until:
            self.loop.at(self.busy_until, self.read)
            return
        if len(self.state.holdings) >= self.consumer.qos.value:
            self.reading = False  # an ack or reject starts it again
            return
        for _ in range(len(self.cycle)):
            queue = self.cycle[0]
            self.cycle.rotate(-1)
            if self.queues[queue]:
                self.receivers[queue](self.queues[queue].pop(), None, None, None, None)
                self.loop.after(self.costs.read, self.read)
                return
        self.reading = False  # a push starts it again

    # --- the pool and the orgs ----------------------------------------------------------------

    def apply_async(self, _fn, args, callback=None, error_callback=None, accept_callback=None) -> None:
        _, queued, drain = args
        events = [e["id"] for q in queued for e in q.arguments()[0]]
        wanted = claim_for(self.s.batch_size, queued) if drain is not None else None
        if wanted is not None:
            events += [e for entry in self.store.claim(drain, *wanted) for e in entry.events]
        by_ws: dict[str, list[str]] = {}
        for event in events:
            by_ws.setdefault(self.published[event][0], []).append(event)
        duration, fates = 0.0, []
        for ws, group in by_ws.items():
            took, fate = self.sync(ws, group)
            duration += took
            fates.append((ws, group, fate))

        def end() -> None:
            for ws, group, fate in fates:
                fate(ws, group)
            callback(len(events))

        self.loop.after(duration, end)

    def sync(self, ws: str, events: list[str]) -> tuple[float, Callable[[str, list[str]], None]]:
        """How long a workspace's part of a batch takes, and what becomes of its events."""
        org, now = self.orgs[ws], self.loop.now
        if org.open_since is not None:
            return self.costs.parked_batch, self.park
        if org.down(now):
            org.calls_while_down += 1
            org.strikes = [t for t in org.strikes if now - t < STRIKE_WINDOW] + [now]
            if len(org.strikes) >= STRIKES:
                org.open_since, org.probe_at, org.interval = now, now + PROBE_FIRST, PROBE_FIRST
                return self.costs.failed_batch, self.park
            return self.costs.failed_batch, self.retry
        return self.costs.batch_fixed + self.costs.batch_per_event * len(events), self.write

    def write(self, ws: str, events: list[str]) -> None:
        for event in events:
            if event not in self.written:
                self.written[event] = self.loop.now
                self.unwritten[ws] -= 1

    def park(self, ws: str, events: list[str]) -> None:
        self.orgs[ws].parked.extend(events)

    def retry(self, ws: str, events: list[str]) -> None:
        """Back on the queue after the first backoff, released by the next look of the retry releaser."""
        for event in events:
            due = self.loop.now + self.rng.uniform(RETRY_BACKOFF / 2, RETRY_BACKOFF)
            queue = "email.sent"
            self.loop.at(math.ceil(due / RETRY_RELEASE) * RETRY_RELEASE,
                         lambda event=event, queue=queue: self.push(Message(self, ws, queue, [event], True)))

    def probe(self) -> None:
        now = self.loop.now
        for ws, org in self.orgs.items():
            if org.open_since is None or now < org.probe_at:
                continue
            org.probe_at, org.interval = now + org.interval, min(org.interval * 2, PROBE_MAX)
            if org.down(now):
                org.calls_while_down += 1
                continue
            org.open_since, org.strikes = None, []
            self.store.spill([(ws, Entry([event])) for event in org.parked])
            org.parked = []

    # --- readings -------------------------------------------------------------------------

    def latencies(self, workspaces: set[str], since: float = -math.inf, until: float = math.inf) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {ws: [] for ws in workspaces}
        for event, (ws, at) in self.published.items():
            if ws in workspaces and since <= at <= until and event in self.written:
                out[ws].append(self.written[event] - at)
        return {ws: sorted(d) for ws, d in out.items()}

    def settled(self, workspaces: set[str] | None = None) -> bool:
        return not any(n for ws, n in self.unwritten.items() if workspaces is None or ws in workspaces)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank (benchmarks.harness.percentile)."""
    if not values:
        return float("nan")
    return values[max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))]


def fairness(scenario: Scenario) -> dict[str, Any]:
    """The benchmark's fairness run: the others trickle; 5 s in, the busiest floods; until it is written and 5 s more."""
    sim = Simulation(scenario)
    burster, smallest, others = sim.ids[0], sim.ids[-1], sim.ids[1:]
    marks: dict[str, float] = {}
    stop = lambda: "stop" in marks  # noqa: E731
    sim.trickle(others, zipf_weights(len(sim.ids), scenario.zipf)[1:], scenario.rate, stop)
    sim.loop.at(5.0, lambda: (marks.setdefault("start", sim.loop.now),
                              sim.flood(burster, scenario.burst, lambda t: marks.setdefault("published", t))))

    def flood_written() -> bool:
        if "published" not in marks or not sim.settled({burster}):
            return False
        marks.setdefault("done", max(sim.written[e] for e, (ws, _) in sim.published.items() if ws == burster))
        sim.loop.at(sim.loop.now + 5.0, lambda: marks.setdefault("stop", sim.loop.now))
        return True

    sim.loop.run(lambda: "done" in marks or flood_written(), limit=600)
    sim.loop.run(lambda: "stop" in marks and sim.settled(), limit=900)
    lat = sim.latencies(set(others), since=marks["start"], until=marks["done"])
    p99 = {ws: percentile(d, 99) for ws, d in lat.items() if d}
    return {"scenario": "fairness", "flood_as": scenario.flood_as, "rate": scenario.rate,
            "smallest_p99_s": round(p99[smallest], 3), "others_p99_max_s": round(max(p99.values()), 3),
            "others_p99_median_s": round(statistics.median(p99.values()), 3),
            "burst_seconds": round(marks["done"] - marks["start"], 1),
            "burst_publish_seconds": round(marks["published"] - marks["start"], 1),
            "moved_by_sieve": sim.store.moved.get(burster, 0)}


def isolation(scenario: Scenario) -> dict[str, Any]:
    """The benchmark's isolation run: everyone trickles for 90 s; 10 s in, the busiest org is down for `outage` s."""
    sim = Simulation(scenario)
    broken, others = sim.ids[0], set(sim.ids[1:])
    org = sim.orgs[broken]
    org.down_from, org.down_until = 10.0, 10.0 + scenario.outage
    end = 10.0 + scenario.outage + 20.0
    sim.trickle(sim.ids, zipf_weights(len(sim.ids), scenario.zipf), scenario.rate, lambda: sim.loop.now >= end)
    sim.loop.run(lambda: sim.loop.now >= end and sim.settled(), limit=end + 300)
    lat = sim.latencies(others)
    p99 = [percentile(d, 99) for d in lat.values() if d]
    backlog = [sim.written[e] for e, (ws, at) in sim.published.items() if ws == broken and at <= org.down_until]
    return {"scenario": "isolation", "rate": scenario.rate, "others_p99_max_s": round(max(p99), 3),
            "others_p99_median_s": round(statistics.median(p99), 3), "outage_calls": org.calls_while_down,
            "backlog_written_after_s": round(max(backlog) - org.down_until, 1)}


def run(scenario: Scenario) -> dict[str, Any]:
    return fairness(scenario) if scenario.name == "fairness" else isolation(scenario)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=("fairness", "isolation"), default="fairness")
    p.add_argument("--rate", type=float, default=None, help="events/s of the trickle (fairness 20, isolation 100)")
    p.add_argument("--flood-as", choices=("sfsync", "no-header"), default="sfsync")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rate = a.rate if a.rate is not None else (20.0 if a.scenario == "fairness" else 100.0)
    result = run(Scenario(name=a.scenario, rate=rate, flood_as=a.flood_as, seed=a.seed))
    result["costs"] = asdict(Costs())
    print(json.dumps(result, indent=2) if a.json else "\n".join(f"{k:28} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()

"""`python -m benchmarks.pool_cpu`: a pool process's CPU per event, measured in this process.

The full benchmark (`benchmarks.run`) measures the whole pipeline on two shared cores, where the
publisher, the consumer, Redis and the emulator compete with the pool and a change of a few per
cent is lost in the spread between runs. This runs the pool's own work alone: the burst's
messages, as the consumer hands them over (batches of `SFSYNC_BATCH_SIZE` events of one
workspace), given to the pool's entry (`workers.consumer.dispatch.run_batch`: the batch task,
with the pool's garbage-collection policy) in this process against a real Redis and the
emulator in its own process, and reports this process's CPU seconds per 10,000 events (the
emulator's are not counted). `--breakdown` also says where that CPU goes, by component (timers
around a few functions, each component's time without the others it calls: the deterministic
profiler's overhead inflates small Python functions, py-spy's sampling is too coarse for a few per
cent). `--cprofile FILE` writes a deterministic profile of one more burst.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import importlib
import os
import pickle
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import signals

from events.publish import bundles, message_headers, stamped
from events.redis_conn import connect
from events.wire import message_body
from salesforce_emulator.client import AdminClient
from workers.consumer.batches import QueuedMessage
from workers.consumer.dispatch import run_batch
from workers.local.stack import stack_env

from benchmarks import load, stack
from benchmarks.harness import WORKSPACE, log

DEFAULT_REDIS = "redis://127.0.0.1:6379/8"

#: --breakdown: component -> the functions (module, qualified name) whose time is its own
COMPONENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "validating events (pydantic)": (("schemas.events", "parse_event"),),
    "HTML to text": (("workers.sync.html_text", "html_to_text"),),
    "Salesforce calls (requests, JSON both ways)": (("simple_salesforce.api", "Salesforce._call_salesforce"),
                                                    ("simple_salesforce.api", "Salesforce.parse_result_to_json")),
    "Redis commands (redis-py, round trips)": (("redis.client", "Redis.execute_command"),
                                               ("redis.client", "Pipeline.execute")),
    "building Tasks and EmailMessages": (("workers.sync.records", "build_email_message"),
                                         ("workers.sync.records", "build_task"),
                                         ("workers.sync.records", "activity_extra_fields")),
    "choosing contacts (index, lookup answers)": (("workers.sync.engine", "_resolve"),),
    "settling outcomes (decide, outcome log)": (("workers.settle", "Settler.settle"),),
    "unpickling the batch, decoding its messages": (("pickle", "loads"),
                                                       ("workers.consumer.batches", "QueuedMessage.arguments")),
}


class Breakdown:
    """CPU seconds per component, each without the time of the timed functions it calls (see COMPONENTS)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(COMPONENTS, 0.0)
        self._inner: list[float] = []

    def install(self) -> None:
        for component, targets in COMPONENTS.items():
            for module_name, qualified in targets:
                owner: Any = importlib.import_module(module_name)
                *path, name = qualified.split(".")
                for part in path:
                    owner = getattr(owner, part)
                original = getattr(owner, name)
                timed = self._timed(component, original)
                setattr(owner, name, timed)
                if not path:  # a function: also where other modules imported it by name
                    for module in list(sys.modules.values()):
                        if getattr(module, name, None) is original and module is not owner:
                            setattr(module, name, timed)

    def _timed(self, component: str, function: Callable[..., Any]) -> Callable[..., Any]:
        inner = self._inner

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            inner.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                nested = inner.pop()
                self.seconds[component] += spent - nested
                if inner:
                    inner[-1] += spent
        return timed

    def reset(self) -> None:
        self.seconds = dict.fromkeys(COMPONENTS, 0.0)


def batches(events: list, batch_size: int) -> list[list[QueuedMessage]]:
    """The burst's messages as the consumer hands them to the pool: up to batch_size events each."""
    out: list[list[QueuedMessage]] = []
    current: list[QueuedMessage] = []
    size = 0
    for task_name, queue, evs, bodies in bundles(events):
        arg = bodies[0] if len(bodies) == 1 else bodies
        kwargs = stamped()
        # held packed, as the consumer holds a message: the JSON body as it came (Celery's protocol 2)
        message = QueuedMessage(str(uuid.uuid4()), (), kwargs, {"routing_key": queue}, task_name, queue,
                                {k: v for k, v in message_headers(evs).items() if k.startswith("sfsync_")},
                                shape_checked=True, packed=message_body([arg], kwargs), events=len(evs))
        if current and size + len(evs) > batch_size:
            out.append(current)
            current, size = [], 0
        current.append(message)
        size += len(evs)
    if current:
        out.append(current)
    return out


class GarbageTimer:
    """CPU seconds the garbage collector took, by generation, since the last reset."""

    def __init__(self) -> None:
        self.by_generation = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.by_generation[info["generation"]] += time.process_time() - self._started

    def reset(self) -> None:
        self.by_generation = [0.0, 0.0, 0.0]

    @property
    def seconds(self) -> float:
        return sum(self.by_generation)


def start_pool_process(a: argparse.Namespace, emulator_url: str, token: str) -> Any:
    """This process set up as a pool process is (runtime built and warmed, start-up objects frozen); its app."""
    os.environ.update(stack_env(redis_url=a.redis_url, instance_url=emulator_url, access_token=token,
                                workspace_id=WORKSPACE, batch_size=a.batch_size))
    # imported once the environment names Redis and the emulator: importing workers.app builds the app's settings
    from workers.app import create_app

    app = create_app()
    signals.worker_process_init.send(sender=None)
    return app


def burst(app: Any, work: list[bytes]) -> int:
    """The burst's batches through the pool's entry (dispatch.run_batch), each unpickled first as a pool
    process does; events done."""
    done = 0
    for pickled in work:
        batch = pickle.loads(pickled)  # noqa: S301 - bytes this run pickled a moment ago
        done += run_batch(batch[0].task, batch)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pool_cpu", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=10_000, help="events per burst (default 10,000)")
    p.add_argument("--repeat", type=int, default=3, help="bursts measured; the median is reported (default 3)")
    p.add_argument("--contacts", type=int, default=8_000, help="contacts seeded (default 8,000)")
    p.add_argument("--batch-size", type=int, default=200, help="events per batch (default 200)")
    p.add_argument("--breakdown", action="store_true", help="also the CPU per component (see COMPONENTS)")
    p.add_argument("--cprofile", metavar="FILE", default=None, help="profile one more burst into FILE (pstats)")
    p.add_argument("--redis-url", default=os.environ.get("SFSYNC_BENCH_REDIS_URL", DEFAULT_REDIS),
                   help="a Redis database the run flushes (default %(default)s)")
    a = p.parse_args(argv)
    connect(a.redis_url).flushdb()
    emulator = stack.start_emulator(dict(os.environ))
    try:
        people = load.contact_people(a.contacts)
        records = load.contact_records(people)
        for start in range(0, len(records), 1000):
            AdminClient(emulator.url).seed("Contact", records[start:start + 1000])
        app = start_pool_process(a, emulator.url, emulator.token)
        burst(app, [pickle.dumps(b) for b in batches(load.burst_events(
            200, people, workspace_id=WORKSPACE, run="warm", seed=0), a.batch_size)])
        result = measure(a, app, people)
    finally:
        emulator.process.kill()
    print(report(a, *result))
    return 0


def measure(a: argparse.Namespace, app: Any, people: list) -> tuple[list[float], list[dict[str, float]]]:
    """CPU seconds per 10,000 events of each burst, and each burst's breakdown (with --breakdown)."""
    seconds: list[float] = []
    parts: list[dict[str, float]] = []
    breakdown = Breakdown() if a.breakdown else None
    if breakdown:
        breakdown.install()
    garbage = GarbageTimer()
    for r in range(a.repeat + (1 if a.cprofile else 0)):
        events = load.burst_events(a.events, people, workspace_id=WORKSPACE, run=f"p{r}", seed=r)
        # pickled as the pool receives them: the burst waits as bytes, which the collector never walks
        work = [pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL) for batch in batches(events, a.batch_size)]
        del events
        if breakdown:
            breakdown.reset()
        garbage.reset()
        if a.cprofile and r == a.repeat:
            profiler = cProfile.Profile()
            profiler.runcall(burst, app, work)
            profiler.dump_stats(a.cprofile)
            log(f"profile of one more burst written to {a.cprofile}")
            break
        cpu, wall = time.process_time(), time.perf_counter()
        done = burst(app, work)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        seconds.append(cpu * 10_000 / a.events)
        if breakdown:
            parts.append({**breakdown.seconds, "collecting garbage": garbage.seconds})
        log(f"burst {r}: {done} events in {len(work)} batches, {cpu:.2f} CPU s (collecting garbage "
            f"{garbage.seconds:.2f} s: by generation {', '.join(f'{g:.2f}' for g in garbage.by_generation)}), "
            f"{wall:.2f} s; {seconds[-1]:.3f} CPU s per 10,000 events")
    return seconds, parts


def report(a: argparse.Namespace, seconds: list[float], parts: list[dict[str, float]]) -> str:
    total = statistics.median(seconds)
    spread = ", ".join(f"{s:.3f}" for s in seconds)
    lines = [f"pool CPU s per 10,000 events: {total:.3f} (median of {len(seconds)}: {spread})"]
    if parts:
        lines.append("  by component, us per event (medians of the bursts):")
        named = 0.0
        for component in [*COMPONENTS, "collecting garbage"]:
            share = statistics.median(p[component] for p in parts) * 10_000 / a.events
            named += share
            lines.append(f"    {share * 100:7.1f}  {component}")
        lines.append(f"    {(total - named) * 100:7.1f}  the rest (the pipeline's own steps: ledger, index and "
                     f"outcome bookkeeping, triage, logging)")
        lines.append(f"    {total * 100:7.1f}  in all")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

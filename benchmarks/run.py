"""`python -m benchmarks.run`: sfsync's throughput, API calls per event, latency and worker memory, as a table.

One run starts (and always stops) its own processes: the Salesforce emulator, one sfsync
worker and one anchor worker (`benchmarks.bare_app`, a batch task that does
nothing), all against a real Redis on a dedicated database. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from events.keys import key
from events.outcome_log import is_final
from events.redis_conn import answers, connect, start_embedded
from salesforce_emulator.client import AdminClient
from workers.local.stack import ManagedProcess, stack_env

from benchmarks import bare_app, load, multi, stack
from benchmarks.harness import WORKSPACE, log, percentile, settle_timeout, wait_until
from benchmarks.replicated import ReplicatedRedis
from benchmarks.report import multi_targets, render, render_multi, targets

#: a dedicated database: the harness flushes it
DEFAULT_REDIS = "redis://127.0.0.1:6379/8"
#: outcomes after which an event needs nothing more (as in the worker's outcome log)
RESULTS = Path(__file__).resolve().parent / "results"
#: events per chunk in --long mode, with RSS read after each
LONG_CHUNK = 10_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=None, help="events per burst (default 10,000; --ci 1,000)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes per worker (default 2)")
    p.add_argument("--repeat", type=int, default=1, help="bursts per pipeline; medians are reported")
    p.add_argument("--contacts", type=int, default=None, help="contacts seeded (default 8,000; --ci 2,000)")
    p.add_argument("--latency-seconds", type=float, default=None, help="steady phase length (default 60; --ci 10)")
    p.add_argument("--rate", type=float, default=100.0, help="events/s in the steady phase (default 100)")
    p.add_argument("--long", action="store_true", help="also push the worker to 100,000 events and compare RSS")
    p.add_argument("--long-events", type=int, default=100_000, help="events processed in total by --long")
    p.add_argument("--ci", action="store_true", help="small and quick; exits non-zero when API calls/event > 0.05")
    p.add_argument("--strict", action="store_true", help="exit non-zero on any missed target, not only API calls")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="after the measured bursts, one more sfsync burst under py-spy (worker and emulator)")
    p.add_argument("--no-drain", dest="drain", action="store_false",
                   help="skip the drain measurements (a pre-filled queue, without the publisher competing)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--redis-url", default=os.environ.get("SFSYNC_BENCH_REDIS_URL", DEFAULT_REDIS))
    p.add_argument("--publish-replicas", type=int, default=0, metavar="N",
                   help="publish the sfsync bursts waiting for N replicas (Redis WAIT) of a private primary the "
                        "run starts with N replicas (instead of --redis-url)")
    m = p.add_argument_group("many workspaces (docs/benchmarks.md, *Many workspaces*)")
    m.add_argument("--workspaces", type=int, default=0, metavar="N",
                   help="N workspaces, each with its own org, registered in the registry (default: the single-workspace run)")
    m.add_argument("--scenario", choices=("multi", "isolation", "fairness"), default="multi",
                   help="multi: Zipf bursts against the anchor, a steady phase, RSS; isolation: one org down for "
                        "--outage s; fairness: one workspace bursts --burst events while the others trickle")
    m.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s of the traffic (default 1.1)")
    m.add_argument("--linger", type=float, default=5.0,
                   help="every workspace's max_latency_seconds, and the anchor's flush interval (default 5)")
    m.add_argument("--outage", type=float, default=60.0, help="isolation: seconds the org is down (default 60)")
    m.add_argument("--broken-rank", type=int, default=1, help="isolation: Zipf rank of the org that goes down")
    m.add_argument("--burst", type=int, default=50_000, help="fairness: events of the bursting workspace")
    m.add_argument("--burst-as", choices=("sfsync", "celery-node", "celery-node-without-headers"), default="sfsync",
                   help="fairness: the burst published through publish_many, as celery-node pushes it with sfsync's "
                        "headers (examples/node/emit.js), or without them")
    m.add_argument("--features", choices=("default", "on", "off"), default="default",
                   help="every workspace's Leads, late-contact and already-logged settings: on (match_leads, "
                        "late_contact_days 30, skip_already_logged), off (none of them), default (the product's "
                        "defaults: late contacts and the already-logged check, no Lead matching)")
    args = p.parse_args(argv)
    multi = args.workspaces > 0
    args.events = args.events or (1_000 if args.ci else 20_000 if multi else 10_000)
    args.contacts = args.contacts or (400 if multi else 2_000 if args.ci else 8_000)
    if args.latency_seconds is None:
        args.latency_seconds = 10.0 if args.ci else 60.0
    args.batch_size = int(os.environ.get("SFSYNC_BATCH_SIZE", "200"))
    args.flush_interval = float(os.environ.get("SFSYNC_FLUSH_INTERVAL", "1.0"))
    return args


class Bench:
    """One benchmark run: owns its processes and the Redis database it flushes."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.processes: list[ManagedProcess] = []
        self.embedded = None
        self.replicated = None
        self.results: dict[str, Any] = {}

    # --- set-up -------------------------------------------------------------------------
    def start(self) -> None:
        a = self.args
        self.redis_url = a.redis_url
        if a.publish_replicas:
            self.replicated = ReplicatedRedis(a.publish_replicas)
            self.replicated.start()
            self.redis_url = self.replicated.url
            log(f"private primary at {self.redis_url} with {a.publish_replicas} replica(s)")
        elif not answers(self.redis_url):
            log(f"no Redis at {self.redis_url}; starting an embedded one")
            self.embedded = start_embedded(db=8)
            self.redis_url = self.embedded.url
        self.redis = connect(self.redis_url)
        self.redis.flushdb()
        self.emulator = stack.start_emulator(dict(os.environ))
        self.processes.append(self.emulator.process)
        self.admin = AdminClient(self.emulator.url)
        log(f"emulator pid {self.emulator.process.proc.pid} at {self.emulator.url}; seeding {a.contacts} contacts")
        self.people = load.contact_people(a.contacts)
        records = load.contact_records(self.people)
        for start in range(0, len(records), 1000):
            self.admin.seed("Contact", records[start:start + 1000])
        env = stack_env(redis_url=self.redis_url, instance_url=self.emulator.url,
                        access_token=self.emulator.token, workspace_id=WORKSPACE,
                        batch_size=a.batch_size, flush_interval=a.flush_interval,
                        worker_concurrency=a.concurrency)
        anchor_orgs = {WORKSPACE: {"url": self.emulator.url, "token": self.emulator.token}}
        self.bare = stack.start_bare_worker({**env, bare_app.ORGS_ENV: json.dumps(anchor_orgs)}, a.concurrency)
        self.processes.append(self.bare)
        self.worker = stack.start_sfsync_worker(env, a.concurrency)
        self.processes.append(self.worker)
        log(f"sfsync worker pid {self.worker.proc.pid}, bare worker pid {self.bare.proc.pid}")
        self.redis_pid = self._redis_pid()
        self.sfsync_processed = 0
        self._warm_up()

    def _redis_pid(self) -> int | None:
        try:
            pid = int(self.redis.info("server")["process_id"])
            with open(f"/proc/{pid}/comm") as f:
                return pid if f.read().startswith("redis") else None
        except (OSError, KeyError, ValueError):
            return None

    def _warm_up(self) -> None:
        """Log in, describe and fill the rep cache in both pool processes, off the clock and the API count."""
        for wave in range(2):
            events = load.burst_events(20, self.people, workspace_id=WORKSPACE, run=f"warm{wave}", seed=wave)
            self._clear_sfsync()
            load.publish_sfsync(events, self.redis_url)
            self._wait_sfsync(len(events))
            self.sfsync_processed += len(events)
            load.publish_bare(events, self.redis_url)
            wait_until(lambda wave=wave: int(self.redis.get(bare_app.DONE_KEY) or 0) >= 20 * (wave + 1), 60,
                       "bare warm-up", [self.bare])

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                process.signal_group(signal.SIGCONT)  # a stopped process would not act on TERM
                process.terminate(timeout=20)
            except Exception as exc:  # noqa: BLE001 - whatever failed, keep stopping the others
                log(f"could not stop {process.argv[:4]}: {exc}")
        if self.embedded is not None:
            self.embedded.stop()
        if self.replicated is not None:
            self.replicated.stop()

    # --- helpers ------------------------------------------------------------------------
    def _clear_sfsync(self) -> None:
        """Forget sfsync's Redis state (ledger, contact index, outcomes) but keep kombu's bindings."""
        keys = list(self.redis.scan_iter(match=key(WORKSPACE, "*"), count=1000))
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start:start + 1000])

    def _clear_phase(self) -> None:
        self.redis.delete(key(WORKSPACE, "counts"), key(WORKSPACE, "outcomes"))

    def _final(self) -> int:
        counts = self.redis.hgetall(key(WORKSPACE, "counts"))
        return sum(int(v) for k, v in counts.items() if is_final(k.split("|", 1)[-1]))

    def _wait_sfsync(self, n: int) -> None:
        wait_until(lambda: self._final() >= n, settle_timeout(n), f"sfsync settling {n} events", [self.worker])

    def _last_outcome_time(self) -> float:
        newest = self.redis.xrevrange(key(WORKSPACE, "outcomes"), count=1)
        return int(newest[0][0].split("-")[0]) / 1000.0

    def _cpu(self) -> dict[str, float]:
        times = os.times()
        worker, bare = self.worker.proc.pid, self.bare.proc.pid
        cpu = {"publisher": times.user + times.system,
               "emulator": stack.tree_cpu(self.emulator.process.proc.pid),
               "sfsync main": stack.cpu_seconds(worker), "sfsync pool": stack.pool_cpu(worker),
               "bare main": stack.cpu_seconds(bare), "bare pool": stack.pool_cpu(bare)}
        if self.redis_pid:
            cpu["redis-server"] = stack.cpu_seconds(self.redis_pid)
        return cpu

    @staticmethod
    def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before[k], 2) for k in before if after[k] - before[k] >= 0.05}

    @contextlib.contextmanager
    def _paused(self, process: ManagedProcess):
        """SIGSTOP a worker's process group while its queue fills, so the drain runs without the publisher."""
        process.signal_group(signal.SIGSTOP)
        try:
            yield
        finally:
            process.signal_group(signal.SIGCONT)

    # --- phases -------------------------------------------------------------------------
    def bare_burst(self, events: list) -> dict[str, Any]:
        n = len(events)
        self.redis.delete(bare_app.DONE_KEY, bare_app.LAST_KEY)
        cpu0 = self._cpu()
        t0 = time.time()
        load.publish_bare(events, self.redis_url)
        published = time.time()
        wait_until(lambda: int(self.redis.get(bare_app.DONE_KEY) or 0) >= n, settle_timeout(n),
                   f"bare pipeline settling {n} events", [self.bare])
        end = float(self.redis.get(bare_app.LAST_KEY))
        return {"events": n, "seconds": round(end - t0, 3), "publish_seconds": round(published - t0, 3),
                "events_per_s": round(n / (end - t0), 1), "cpu_seconds": self._cpu_used(cpu0, self._cpu())}

    def sfsync_burst(self, events: list) -> dict[str, Any]:
        n = len(events)
        self._clear_sfsync()  # a cold contact index: every batch pays its SOQL lookup (the conservative case)
        self.admin.reset_api_calls()
        cpu0 = self._cpu()
        t0 = time.time()
        load.publish_sfsync(events, self.redis_url, replicas=self.args.publish_replicas)
        published = time.time()
        self._wait_sfsync(n)
        end = self._last_outcome_time()
        cpu = self._cpu_used(cpu0, self._cpu())
        state = self.admin.state()
        self.sfsync_processed += n
        counts = {k: int(v) for k, v in self.redis.hgetall(key(WORKSPACE, "counts")).items()}
        return {"events": n, "seconds": round(end - t0, 3), "publish_seconds": round(published - t0, 3),
                "events_per_s": round(n / (end - t0), 1), "api_calls": state["api_calls"],
                "api_calls_by_route": state.get("api_calls_by_route", {}),
                "api_calls_per_event": round(state["api_calls"] / n, 4), "outcomes": counts, "cpu_seconds": cpu}

    def bare_drain(self, events: list) -> dict[str, Any]:
        n = len(events)
        self.redis.delete(bare_app.DONE_KEY, bare_app.LAST_KEY)
        with self._paused(self.bare):
            load.publish_bare(events, self.redis_url)
            cpu0 = self._cpu()
            t0 = time.time()
        wait_until(lambda: int(self.redis.get(bare_app.DONE_KEY) or 0) >= n, settle_timeout(n),
                   f"bare pipeline draining {n} events", [self.bare])
        end = float(self.redis.get(bare_app.LAST_KEY))
        return {"events": n, "seconds": round(end - t0, 3), "events_per_s": round(n / (end - t0), 1),
                "cpu_seconds": self._cpu_used(cpu0, self._cpu())}

    def sfsync_drain(self, events: list) -> dict[str, Any]:
        n = len(events)
        self._clear_sfsync()
        self.admin.reset_api_calls()
        with self._paused(self.worker):
            load.publish_sfsync(events, self.redis_url)
            cpu0 = self._cpu()
            t0 = time.time()
        self._wait_sfsync(n)
        end = self._last_outcome_time()
        cpu = self._cpu_used(cpu0, self._cpu())
        self.sfsync_processed += n
        calls = self.admin.api_calls()
        return {"events": n, "seconds": round(end - t0, 3), "events_per_s": round(n / (end - t0), 1),
                "api_calls": calls, "api_calls_per_event": round(calls / n, 4), "cpu_seconds": cpu}

    def latency(self) -> dict[str, Any]:
        a = self.args
        self._clear_phase()  # the contact index stays warm: this is the steady state
        kinds = load.kinds(int(a.rate * a.latency_seconds) + 1, random.Random(11))
        rng = random.Random(12)

        def make(i: int):
            kind = kinds[i]
            person = (load.Person("Sam", "Nobody", f"nobody.lat.{i}@nowhere.example", "Nowhere")
                      if kind == "unknown" else self.people[rng.randrange(len(self.people))])
            return load.parse_event(load.email_event(kind, person, workspace_id=WORKSPACE, run="lat", n=i))

        log(f"steady phase: {a.rate:.0f} events/s for {a.latency_seconds:.0f} s")
        sent = load.publish_paced(make, a.rate, a.latency_seconds, self.redis_url)
        self._wait_sfsync(len(sent))
        self.sfsync_processed += len(sent)
        delays = []
        for entry_id, fields in self.redis.xrange(key(WORKSPACE, "outcomes")):
            if is_final(fields.get("outcome")) and fields.get("event_id") in sent:
                delays.append(int(entry_id.split("-")[0]) / 1000.0 - sent[fields["event_id"]])
        delays.sort()
        return {"events": len(sent), "rate": a.rate, "seconds": a.latency_seconds,
                "p50_s": round(percentile(delays, 50), 3), "p99_s": round(percentile(delays, 99), 3),
                "max_s": round(delays[-1], 3), "measured": len(delays)}

    def memory(self) -> dict[str, Any]:
        rows = stack.tree_memory(self.worker.proc.pid)
        return {"after_events": self.sfsync_processed, "processes": rows,
                "max_hwm_mb": round(max(r["hwm_kb"] for r in rows) / 1024, 1),
                "max_rss_mb": round(max(r["rss_kb"] for r in rows) / 1024, 1)}

    def long(self) -> list[dict[str, Any]]:
        a = self.args
        curve = []
        chunk_no = 0
        while self.sfsync_processed < a.long_events:
            n = min(LONG_CHUNK, a.long_events - self.sfsync_processed)
            events = load.burst_events(n, self.people, workspace_id=WORKSPACE, run=f"long{chunk_no}", seed=100 + chunk_no)
            self._clear_phase()
            load.publish_sfsync(events, self.redis_url)
            self._wait_sfsync(n)
            self.sfsync_processed += n
            chunk_no += 1
            curve.append(self.memory())
            log(f"--long: {self.sfsync_processed} events processed, max RSS {curve[-1]['max_rss_mb']} MB")
        return curve

    def profile(self, events: list, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        spies = {"worker": stack.Profiler.start(self.worker.proc.pid, directory / "worker.txt"),
                 "emulator": stack.Profiler.start(self.emulator.process.proc.pid, directory / "emulator.txt")}
        if not all(spies.values()):
            log("py-spy is not installed next to this Python; skipping --profile")
            return {}
        try:
            time.sleep(1.0)  # let py-spy attach before the load starts
            burst = self.sfsync_burst(events)
        finally:
            outputs = {name: spy.stop() for name, spy in spies.items()}
        found = {name: stack.top_frames(path) for name, path in outputs.items() if path}
        return {"burst": burst, "files": {k: str(v) for k, v in outputs.items()}, "top": found}

    # --- the whole run ------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        a = self.args
        bare_runs, sfsync_runs, bare_drains, sfsync_drains = [], [], [], []
        memory_first = None
        for r in range(a.repeat):
            events = load.burst_events(a.events, self.people, workspace_id=WORKSPACE, run=f"r{r}", seed=r)
            log(f"repeat {r + 1}/{a.repeat}: bare pipeline, {a.events} events")
            bare_runs.append(self.bare_burst(events))
            log(f"  bare: {bare_runs[-1]['events_per_s']} events/s")
            log(f"repeat {r + 1}/{a.repeat}: sfsync, {a.events} events")
            sfsync_runs.append(self.sfsync_burst(events))
            log(f"  sfsync: {sfsync_runs[-1]['events_per_s']} events/s, "
                f"{sfsync_runs[-1]['api_calls']} API calls")
            if memory_first is None:
                memory_first = self.memory()
            if a.drain:
                log(f"repeat {r + 1}/{a.repeat}: drains of a pre-filled queue (workers paused while publishing)")
                bare_drains.append(self.bare_drain(events))
                sfsync_drains.append(self.sfsync_drain(events))
                log(f"  drain: bare {bare_drains[-1]['events_per_s']} events/s, "
                    f"sfsync {sfsync_drains[-1]['events_per_s']} events/s")
        results: dict[str, Any] = {
            "config": {k: getattr(a, k) for k in ("events", "concurrency", "repeat", "contacts", "batch_size",
                                                  "flush_interval", "rate", "latency_seconds", "ci", "long", "drain",
                                                  "publish_replicas")},
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "bare": bare_runs, "sfsync": sfsync_runs,
            "median": {
                "bare_events_per_s": statistics.median(b["events_per_s"] for b in bare_runs),
                "sfsync_events_per_s": statistics.median(s["events_per_s"] for s in sfsync_runs),
                "ratio": round(statistics.median(s["events_per_s"] / b["events_per_s"]
                                                 for s, b in zip(sfsync_runs, bare_runs)), 3),
                "api_calls_per_event": statistics.median(s["api_calls_per_event"] for s in sfsync_runs),
                "cpu_per_10k_events": cpu_per_10k(sfsync_runs, bare_runs),
                "cpu_per_publisher_second": cpu_per_publisher_second(sfsync_runs, bare_runs),
            },
            "memory_first": memory_first,
        }
        if bare_drains:
            results["bare_drain"], results["sfsync_drain"] = bare_drains, sfsync_drains
            results["median"].update(
                bare_drain_events_per_s=statistics.median(b["events_per_s"] for b in bare_drains),
                sfsync_drain_events_per_s=statistics.median(s["events_per_s"] for s in sfsync_drains),
                drain_ratio=round(statistics.median(s["events_per_s"] / b["events_per_s"]
                                                    for s, b in zip(sfsync_drains, bare_drains)), 3))
        if a.latency_seconds > 0:
            results["latency"] = self.latency()
        if a.long:
            curve = self.long()
            results["memory_curve"] = curve
            results["memory_long"] = curve[-1] if curve else self.memory()
        if a.profile:
            events = load.burst_events(a.events, self.people, workspace_id=WORKSPACE, run="prof", seed=99)
            log("profiled sfsync burst (not counted in the figures)")
            results["profile"] = self.profile(events, Path(a.profile))
        return results


def cpu_per_10k(sfsync_runs: list[dict[str, Any]], bare_runs: list[dict[str, Any]]) -> dict[str, float]:
    """CPU seconds per 10,000 events of each worker's pool processes and main process (the consumer),
    medians over the bursts: sfsync's own work per event, next to the anchor's."""
    medians = {}
    for name, runs in (("sfsync", sfsync_runs), ("bare", bare_runs)):
        for role in ("pool", "main"):
            medians[f"{name} {role}"] = round(statistics.median(
                r["cpu_seconds"].get(f"{name} {role}", 0.0) * 10_000 / r["events"] for r in runs), 2)
    return medians


def cpu_per_publisher_second(sfsync_runs: list[dict[str, Any]], bare_runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each worker's pool and main process CPU seconds per CPU second of the publisher in the same burst,
    medians over the bursts. The publisher's work is identical in every burst, so on a machine whose
    speed drifts between runs (shared cores) this ratio compares code, where seconds compare moments."""
    medians = {}
    for name, runs in (("sfsync", sfsync_runs), ("bare", bare_runs)):
        for role in ("pool", "main"):
            shares = [r["cpu_seconds"].get(f"{name} {role}", 0.0) / r["cpu_seconds"]["publisher"]
                      for r in runs if r["cpu_seconds"].get("publisher")]
            if shares:
                medians[f"{name} {role}"] = round(statistics.median(shares), 3)
    return medians


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a TERM (CI timeout, Ctrl-C in make) must still run the finally below and stop every process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    if args.workspaces:
        return main_multi(args, started)
    bench = Bench(args)
    try:
        bench.start()
        results = bench.run()
    finally:
        bench.stop()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    checks = targets(results, args)
    results["checks"] = [c.as_dict() for c in checks]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "last.json").write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(render(results, checks))
    gate = [c for c in checks if c.result == "MISS" and (args.strict or c.gate)]
    return 1 if gate else 0


def main_multi(args: argparse.Namespace, started: float) -> int:
    results = multi.run(args)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    checks = multi_targets(results)
    results["checks"] = [c.as_dict() for c in checks]
    RESULTS.mkdir(exist_ok=True)
    features = "" if args.features == "default" else f"-features-{args.features}"
    name = f"last-{args.scenario}-{args.workspaces}ws-linger{args.linger:g}{features}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str) if args.json else render_multi(results, checks))
    gate = [c for c in checks if c.result == "MISS" and (args.strict or c.gate)]
    return 1 if gate else 0


if __name__ == "__main__":
    sys.exit(main())

"""Many workspaces on one fleet: `python -m benchmarks.run --workspaces N --scenario multi|isolation|fairness`.

Every workspace has its own org in the emulator (its own contacts, API counter and faults) and
is registered through the workspace registry with an OAuth refresh token, as a deployment
would hold it. Traffic follows Zipf's law (s = 1.1 by default): the workspace of rank k sends
a share proportional to 1/k^s. See docs/benchmarks.md, *Many workspaces*.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from events.keys import key
from events.outcome_log import is_final
from events.redis_conn import answers, connect, start_embedded
from salesforce_emulator.client import AdminClient
from schemas.events import Event
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from schemas.salesforce_hosts import HostPolicy
from workers.local.stack import ManagedProcess, local_hosts, stack_env
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

from benchmarks import bare_app, load, stack
from benchmarks.harness import WORKSPACE, log, percentile, settle_timeout, wait_until
from benchmarks.traffic import (TICK, interleave, owner_of, split, summary, trickle_ticks, workspace_ids,
                                zipf_weights)

#: keys of sfsync's own state a repeat keeps: the org describes shared by the workers
KEEP = re.compile(r":(describe|mappings|breaker)")
#: `--features`: the workspaces' Leads, late-contact and already-logged settings
FEATURES: dict[str, dict[str, Any]] = {
    "default": {},
    "on": {"match_leads": True, "late_contact_days": 30, "skip_already_logged": True},
    "off": {"match_leads": False, "late_contact_days": 0, "skip_already_logged": False},
}
#: the burst publisher (fairness) reports its start and end here
BURST_START, BURST_END = "bench:burst:start", "bench:burst:end"


class Trickle:
    """Steady traffic in a thread: `rate` events/s spread over workspaces by weight, sent every TICK
    seconds, each tick's events bundled per workspace; records each event's send time."""

    def __init__(self, ids: list[str], weights: list[float], rate: float, people: list[load.Person],
                 broker_url: str, tag: str, seed: int = 5):
        self.ids, self.weights, self.rate = ids, weights, rate
        self.people, self.broker_url, self.tag = people, broker_url, tag
        self.rng = random.Random(seed)
        self.kinds = load.kinds(100_000, random.Random(seed + 1))
        self.sent: dict[str, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-trickle", daemon=True)
        self.error: BaseException | None = None

    def _event(self, ws: str, n: int) -> Event:
        kind = self.kinds[n % len(self.kinds)]
        person = (load.Person("Sam", "Nobody", f"nobody.{self.tag}.{n}@nowhere.example", "Nowhere")
                  if kind == "unknown" else self.people[self.rng.randrange(len(self.people))])
        return load.parse_event(load.email_event(kind, person, workspace_id=ws, run=f"{self.tag}-{ws}", n=n))

    def _run(self) -> None:
        try:
            start, due, n = time.monotonic(), 0.0, 0
            ticks = trickle_ticks(self.ids, self.weights, self.rate, self.rng)
            while not self.stop.is_set():
                per_ws: dict[str, list[Event]] = {}
                for ws in next(ticks):
                    per_ws.setdefault(ws, []).append(self._event(ws, n))
                    n += 1
                batch = [b for evs in per_ws.values() for b in load.bundles(evs)]
                for event_id, at in load.publish_bundles(batch, self.broker_url).items():
                    self.sent[event_id] = (owner_of(event_id), at)
                due += TICK
                self.stop.wait(max(0.0, start + due - time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported by join(): a silent publisher would fake good latency
            self.error = exc

    def start(self) -> "Trickle":
        self.thread.start()
        return self

    def join(self) -> dict[str, tuple[str, float]]:
        self.stop.set()
        self.thread.join(30)
        if self.error is not None:
            raise RuntimeError(f"the trickle publisher failed: {self.error!r}") from self.error
        return self.sent


def publish_burst(broker_url: str, ws: str, n: int, contacts: int, tag: str, burst_as: str = "sfsync") -> None:
    """In its own process (fairness): one workspace's burst, times in Redis. Through `publish_many`
    ("sfsync"), or as celery-node pushes it (no argsrepr): with sfsync's headers as
    examples/node/emit.js sets them ("celery-node"), or without them, as an emitter that does not."""
    people = load.contact_people(contacts)
    events = load.burst_events(n, people, workspace_id=ws, run=tag, seed=77)
    client = connect(broker_url)
    client.set(BURST_START, f"{time.time():.6f}")
    if burst_as == "sfsync":
        load.publish_sfsync(events, broker_url)
    else:
        load.publish_celery_node(events, broker_url, sfsync_headers=burst_as == "celery-node")
    client.set(BURST_END, f"{time.time():.6f}")


class MultiBench:
    """One multi-workspace run: emulator with an org per workspace, the registry, an sfsync worker and the anchor."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.ids = workspace_ids(args.workspaces)
        self.weights = zipf_weights(args.workspaces, args.zipf)
        self.processes: list[ManagedProcess] = []
        self.embedded = None

    # --- set-up -------------------------------------------------------------------------
    def start(self) -> None:
        a = self.args
        self.redis_url = a.redis_url
        if not answers(self.redis_url):
            log(f"no Redis at {self.redis_url}; starting an embedded one")
            self.embedded = start_embedded(db=8)
            self.redis_url = self.embedded.url
        self.redis = connect(self.redis_url)
        self.redis.flushdb()
        self.emulator = stack.start_emulator(dict(os.environ))
        self.processes.append(self.emulator.process)
        self.admin = AdminClient(self.emulator.url)
        self.people = load.contact_people(a.contacts)
        log(f"emulator at {self.emulator.url}; {len(self.ids)} orgs with {a.contacts} contacts each")
        keys = new_key()
        specs, anchor_orgs = self._orgs()
        Registry(self.redis, Keyring(keys), hosts=HostPolicy.parse(local_hosts(self.emulator.url))).apply(
            specs, author="benchmark")
        env = stack_env(redis_url=self.redis_url, instance_url=self.emulator.url, access_token=self.emulator.token,
                        workspace_id=WORKSPACE, batch_size=a.batch_size, flush_interval=a.flush_interval,
                        worker_concurrency=a.concurrency, secret_keys=keys)
        bare_env = {**env, "SFSYNC_FLUSH_INTERVAL": str(a.linger),
                    bare_app.ORGS_ENV: json.dumps(anchor_orgs)}
        self.bare = stack.start_bare_worker(bare_env, a.concurrency)
        self.processes.append(self.bare)
        self.worker = stack.start_sfsync_worker(env, a.concurrency)
        self.processes.append(self.worker)
        log(f"sfsync worker pid {self.worker.proc.pid}, bare worker pid {self.bare.proc.pid}, linger {a.linger} s")
        self._warm_up()

    def _orgs(self) -> tuple[list[WorkspaceSpec], dict[str, dict[str, str]]]:
        """An org per workspace (contacts seeded, a refresh token issued) and its registry entry."""
        records = load.contact_records(self.people)
        specs, anchor = [], {WORKSPACE: {"url": self.emulator.url, "token": self.emulator.token}}
        for ws in self.ids:
            creds = self.admin.create_org(ws)
            org = self.admin.for_org(ws)
            for start in range(0, len(records), 1000):
                org.seed("Contact", records[start:start + 1000])
            connection = SalesforceConnection(login_url=self.emulator.url, client_id=creds["client_id"],
                                              client_secret=creds["client_secret"],
                                              refresh_token=org.issue_refresh_token())
            specs.append(WorkspaceSpec(id=ws, name=f"benchmark {ws}", salesforce=connection,
                                       max_latency_seconds=self.args.linger, **FEATURES[self.args.features]))
            anchor[ws] = {"url": creds["instance_url"], "token": creds["access_token"]}
        return specs, anchor

    def _warm_up(self) -> None:
        """Imports and first connections of both workers, on the environment's workspace only: the
        registered workspaces' logins and describes stay on the measured count."""
        events = load.burst_events(40, self.people, workspace_id=WORKSPACE, run="warm", seed=1)
        load.publish_sfsync(events, self.redis_url)
        wait_until(lambda: self._final([WORKSPACE]) >= 40, 60, "sfsync warm-up", [self.worker])
        load.publish_bare(events, self.redis_url)
        wait_until(lambda: int(self.redis.get(bare_app.DONE_KEY) or 0) >= 40, 60, "bare warm-up", [self.bare])

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                process.terminate(timeout=20)
            except Exception as exc:  # noqa: BLE001 - whatever failed, keep stopping the others
                log(f"could not stop {process.argv[:4]}: {exc}")
        if self.embedded is not None:
            self.embedded.stop()

    # --- readings -----------------------------------------------------------------------
    def _final(self, ids: list[str] | None = None) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for ws in ids or self.ids:
            pipe.hgetall(key(ws, "counts"))
        return sum(int(v) for counts in pipe.execute() for k, v in counts.items() if is_final(k.split("|", 1)[-1]))

    def _wait_all(self, n: int, what: str, extra: float = 0.0) -> None:
        wait_until(lambda: self._final() >= n, settle_timeout(n) + extra, what, [self.worker])

    def _clear(self) -> None:
        """Forget sfsync's per-workspace state (cold contact index, no outcomes), keeping the describes."""
        for ws in self.ids:
            names = [k for k in self.redis.scan_iter(match=key(ws, "*"), count=1000) if not KEEP.search(k)]
            for start in range(0, len(names), 1000):
                self.redis.delete(*names[start:start + 1000])

    def _api(self) -> dict[str, Any]:
        """Every org's counted calls (what Salesforce charges to the daily allowance), by route, and logins."""
        total, by_route, logins, by_workspace = 0, {}, 0, {}
        for ws in self.ids:
            state = self.admin.for_org(ws).state()
            total += state["api_calls"]
            by_workspace[ws] = state["api_calls"]
            for route, n in state.get("api_calls_by_route", {}).items():
                by_route[route] = by_route.get(route, 0) + n
            logins += sum(state.get("token_grants", {}).values())
        return {"api_calls": total, "by_route": dict(sorted(by_route.items())), "token_grants": logins,
                "by_workspace": by_workspace}

    def _reset_api(self) -> None:
        for ws in self.ids:
            self.admin.for_org(ws).reset_api_calls()

    def latencies(self, sent: dict[str, tuple[str, float]], ids: list[str] | None = None,
                  since: float = 0.0, until: float = float("inf")) -> dict[str, list[float]]:
        """Per workspace, publish -> written (outcome entry's time) of the events sent in [since, until]."""
        out: dict[str, list[float]] = {}
        for ws in ids or self.ids:
            delays = []
            for entry_id, fields in self.redis.xrange(key(ws, "outcomes")):
                got = sent.get(fields.get("event_id"))
                if got and is_final(fields.get("outcome")) and since <= got[1] <= until:
                    delays.append(int(entry_id.split("-")[0]) / 1000.0 - got[1])
            out[ws] = sorted(delays)
        return out

    def write_times(self, ws: str, event_ids: set[str]) -> list[float]:
        """When each of these events of `ws` was written (or skipped: ended), from its outcome entry."""
        return [int(entry_id.split("-")[0]) / 1000.0 for entry_id, fields in self.redis.xrange(key(ws, "outcomes"))
                if fields.get("event_id") in event_ids and is_final(fields.get("outcome"))]

    def last_write(self, ids: list[str]) -> float:
        times = []
        for ws in ids:
            newest = self.redis.xrevrange(key(ws, "outcomes"), count=1)
            if newest:
                times.append(int(newest[0][0].split("-")[0]) / 1000.0)
        return max(times)

    def memory(self) -> dict[str, Any]:
        rows = stack.tree_memory(self.worker.proc.pid)
        return {"processes": rows, "max_hwm_mb": round(max(r["hwm_kb"] for r in rows) / 1024, 1),
                "max_rss_mb": round(max(r["rss_kb"] for r in rows) / 1024, 1)}

    # --- scenario: multi ---------------------------------------------------------------------
    def burst_events(self, total: int, tag: str, seed: int) -> dict[str, list[Event]]:
        counts = split(total, self.weights)
        return {ws: load.burst_events(n, self.people, workspace_id=ws, run=f"{tag}-{ws}", seed=seed + i)
                for i, (ws, n) in enumerate(zip(self.ids, counts))}

    def bare_burst(self, sequence: list[load.Bundle], n: int) -> dict[str, Any]:
        self.redis.delete(bare_app.DONE_KEY, bare_app.LAST_KEY, bare_app.ERRORS_KEY)
        self._reset_api()
        t0 = time.time()
        load.publish_bundles(sequence, self.redis_url, anchor=True)
        published = time.time()
        wait_until(lambda: int(self.redis.get(bare_app.DONE_KEY) or 0) >= n, settle_timeout(n),
                   f"bare pipeline settling {n} events", [self.bare])
        end = float(self.redis.get(bare_app.LAST_KEY))
        calls = self._api()["by_route"].get("POST composite/sobjects", 0)
        return {"events": n, "seconds": round(end - t0, 3), "publish_seconds": round(published - t0, 3),
                "events_per_s": round(n / (end - t0), 1), "collection_calls": calls,
                "failed_calls": int(self.redis.get(bare_app.ERRORS_KEY) or 0)}

    def sfsync_burst(self, sequence: list[load.Bundle], n: int) -> dict[str, Any]:
        self._clear()
        self._reset_api()
        t0 = time.time()
        sent = {e: ("", at) for e, at in load.publish_bundles(sequence, self.redis_url).items()}
        published = time.time()
        self._wait_all(n, f"sfsync settling {n} events of {len(self.ids)} workspaces")
        end = self.last_write(self.ids)
        api = self._api()
        p99s = [percentile(d, 99) for d in self.latencies(sent).values() if d]
        return {"events": n, "seconds": round(end - t0, 3), "publish_seconds": round(published - t0, 3),
                "events_per_s": round(n / (end - t0), 1), **api,
                "api_calls_per_event": round(api["api_calls"] / n, 4),
                "burst_p99_max_s": round(max(p99s), 3)}

    def steady(self, rate: float, seconds: float, tag: str) -> dict[str, Any]:
        """Zipf traffic at `rate` events/s: per-workspace latency and the calls it costs."""
        for ws in self.ids:
            self.redis.delete(key(ws, "counts"), key(ws, "outcomes"))
        self._reset_api()
        trickle = Trickle(self.ids, self.weights, rate, self.people, self.redis_url, tag).start()
        time.sleep(seconds)
        sent = trickle.join()
        self._wait_all(len(sent), "sfsync settling the steady phase", extra=self.args.linger)
        api = self._api()
        return {"rate": rate, "seconds": seconds, "events": len(sent), **api,
                "api_calls_per_event": round(api["api_calls"] / max(len(sent), 1), 4),
                "per_workspace": per_workspace(self.latencies(sent))}

    def run_multi(self) -> dict[str, Any]:
        a = self.args
        bare_runs, sfsync_runs, memory = [], [], None
        before = self.memory()  # warmed up, no registered workspace connected yet
        for r in range(a.repeat):
            per_ws = self.burst_events(a.events, f"m{r}", seed=1000 * r)
            sequence = interleave(per_ws, random.Random(r))
            log(f"repeat {r + 1}/{a.repeat}: {a.events} events over {len(self.ids)} workspaces "
                f"in {len(sequence)} bundles; bare pipeline")
            bare_runs.append(self.bare_burst(sequence, a.events))
            log(f"  bare: {bare_runs[-1]['events_per_s']} events/s; sfsync")
            sfsync_runs.append(self.sfsync_burst(sequence, a.events))
            s = sfsync_runs[-1]
            log(f"  sfsync: {s['events_per_s']} events/s, {s['api_calls']} API calls ({s['api_calls_per_event']}/event)")
            if memory is None:
                memory = self.memory()
        results: dict[str, Any] = {
            "bare": bare_runs, "sfsync": sfsync_runs, "memory_before": before, "memory": memory,
            "summary": {
                "bare_events_per_s": summary([b["events_per_s"] for b in bare_runs]),
                "sfsync_events_per_s": summary([s["events_per_s"] for s in sfsync_runs]),
                "ratio": summary([s["events_per_s"] / b["events_per_s"] for s, b in zip(sfsync_runs, bare_runs)]),
                "api_calls_per_event": summary([s["api_calls_per_event"] for s in sfsync_runs]),
            }}
        if a.latency_seconds > 0:
            log(f"steady phase: {a.rate:.0f} events/s over {len(self.ids)} workspaces for {a.latency_seconds:.0f} s")
            results["steady"] = self.steady(a.rate, a.latency_seconds, "steady")
        results["memory_after"] = self.memory()
        return results

    def _warm_workspaces(self) -> None:
        """10 s of traffic first, so every workspace's logins and describes are off the measured latency."""
        log("10 s of traffic to connect every workspace (not measured)")
        self.steady(self.args.rate, 10, "warm")

    # --- scenario: isolation -----------------------------------------------------------------
    def run_isolation(self) -> dict[str, Any]:
        a = self.args
        broken = self.ids[a.broken_rank - 1]
        others = [ws for ws in self.ids if ws != broken]
        self._warm_workspaces()
        runs = []
        for r in range(a.repeat):
            log(f"isolation {r + 1}/{a.repeat}: {a.rate:.0f} events/s; {broken} down for {a.outage:.0f} s after 10 s")
            runs.append(self._isolation_once(broken, others, f"iso{r}"))
            x = runs[-1]
            log(f"  others' p99 max {x['others_p99_max_s']} s; {broken}: {x['outage_calls']} calls during the "
                f"outage, backlog written {x['backlog_written_after_s']} s after it")
        return {"broken": broken, "outage_seconds": a.outage, "runs": runs,
                "summary": {name: summary([x[name] for x in runs]) for name in
                            ("others_p99_max_s", "others_p99_median_s", "outage_calls", "backlog_written_after_s")}}

    def _isolation_once(self, broken: str, others: list[str], tag: str) -> dict[str, Any]:
        a = self.args
        for ws in self.ids:
            self.redis.delete(key(ws, "counts"), key(ws, "outcomes"))
        org = self.admin.for_org(broken)
        org.reset_api_calls()
        probes_before = self.worker.output().count(f"org of workspace {broken} still unavailable")
        trickle = Trickle(self.ids, self.weights, a.rate, self.people, self.redis_url, tag).start()
        time.sleep(10)
        fault = org.add_fault("outage", seconds=a.outage)
        outage_start = time.time()
        time.sleep(a.outage)
        outage_end = outage_start + a.outage
        hits = next((f["hits"] for f in org.faults() if f["id"] == fault), 0)
        time.sleep(20)
        sent = trickle.join()
        org.delete_fault(fault)
        # the backlog waits for the breaker's next probe (up to 30 s apart) before it is released
        self._wait_all(len(sent), "sfsync settling the isolation run", extra=120)
        lat = self.latencies(sent)
        backlog = {e for e, (ws, at) in sent.items() if ws == broken and at <= outage_end}
        written = self.write_times(broken, backlog)
        others_p99 = [percentile(lat[ws], 99) for ws in others if lat[ws]]
        return {"events": len(sent), "others_p99_max_s": round(max(others_p99), 3),
                "others_p99_median_s": round(statistics.median(others_p99), 3),
                "outage_calls": hits,
                "probes_logged": self.worker.output().count(f"org of workspace {broken} still unavailable") - probes_before,
                "backlog_events": len(backlog), "backlog_written": len(written),
                "backlog_written_after_s": round(max(written) - outage_end, 1) if written else float("nan"),
                "per_workspace": per_workspace(lat)}

    # --- scenario: fairness ------------------------------------------------------------------
    def run_fairness(self) -> dict[str, Any]:
        a = self.args
        burster, smallest = self.ids[0], self.ids[-1]
        others = self.ids[1:]
        self._warm_workspaces()
        runs = []
        for r in range(a.repeat):
            log(f"fairness {r + 1}/{a.repeat}: {burster} bursts {a.burst:,} events (published as {a.burst_as}); the other "
                f"{len(others)} trickle {a.rate:.0f} events/s")
            runs.append(self._fairness_once(burster, smallest, others, f"fair{r}"))
            x = runs[-1]
            log(f"  {smallest} p99 {x['smallest_p99_s']} s, others' p99 max {x['others_p99_max_s']} s, "
                f"burst written in {x['burst_seconds']} s")
        return {"burster": burster, "smallest": smallest, "burst": a.burst, "runs": runs,
                "summary": {name: summary([x[name] for x in runs]) for name in
                            ("smallest_p99_s", "others_p99_max_s", "others_p99_median_s", "burst_seconds")}}

    def _fairness_once(self, burster: str, smallest: str, others: list[str], tag: str) -> dict[str, Any]:
        a = self.args
        for ws in self.ids:
            self.redis.delete(key(ws, "counts"), key(ws, "outcomes"))
        self.redis.delete(BURST_START, BURST_END)
        weights = zipf_weights(len(self.ids), a.zipf)[1:]
        trickle = Trickle(others, weights, a.rate, self.people, self.redis_url, tag).start()
        time.sleep(5)
        burst = multiprocessing.get_context("spawn").Process(
            target=publish_burst, args=(self.redis_url, burster, a.burst, a.contacts, tag, a.burst_as))
        burst.start()
        try:
            wait_until(lambda: self._final([burster]) >= a.burst, settle_timeout(a.burst) + 60,
                       f"{burster}'s burst settling", [self.worker])
        finally:
            burst.join(30)
        time.sleep(5)
        sent = trickle.join()
        self._wait_all(len(sent) + a.burst, "sfsync settling the fairness run", extra=a.linger)
        start, done = float(self.redis.get(BURST_START)), self.last_write([burster])
        lat = self.latencies(sent, others, since=start, until=done)
        p99 = [percentile(lat[ws], 99) for ws in others if lat[ws]]
        return {"events": len(sent) + a.burst, "burst_seconds": round(done - start, 1),
                "burst_publish_seconds": round(float(self.redis.get(BURST_END)) - start, 1),
                "smallest_p99_s": round(percentile(lat[smallest], 99), 3) if lat[smallest] else float("nan"),
                "smallest_events": len(lat[smallest]),
                "others_p99_max_s": round(max(p99), 3), "others_p99_median_s": round(statistics.median(p99), 3),
                "per_workspace": per_workspace(lat)}


def per_workspace(latencies: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {ws: {"events": len(d), "p50_s": round(percentile(d, 50), 3), "p99_s": round(percentile(d, 99), 3),
                 "max_s": round(d[-1], 3)} for ws, d in latencies.items() if d}


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = MultiBench(args)
    try:
        bench.start()
        scenario: Callable[[], dict[str, Any]] = getattr(bench, f"run_{args.scenario}")
        results = scenario()
    finally:
        bench.stop()
    results["config"] = {k: getattr(args, k) for k in (
        "scenario", "workspaces", "zipf", "events", "linger", "concurrency", "repeat", "contacts", "batch_size",
        "rate", "latency_seconds", "outage", "broken_rank", "burst", "burst_as", "ci", "features")}
    results["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    return results

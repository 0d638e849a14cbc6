"""The benchmark's targets (issue #7) and the table that shows each figure against its target."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, dataclass
from typing import Any

#: API calls per event on the burst; the CI gate
MAX_CALLS_PER_EVENT = 0.05
#: sfsync throughput as a share of the bare Celery pipeline
MIN_RATIO = 0.8
#: seconds p99 latency may exceed the batch flush interval
LATENCY_SLACK = 1.0
#: MB of resident memory per worker process
MAX_RSS_MB = 150.0
#: growth of a worker process's peak RSS between 10k and 100k events that still counts as flat
MAX_GROWTH = 0.10


@dataclass
class Check:
    name: str
    value: str
    target: str
    result: str  # PASS, MISS, "" (figure without a target) or "not run"
    gate: bool = False  # a MISS fails the run even without --strict

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(results: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    m = results["median"]
    n = results["config"]["events"]
    checks = [
        Check(f"throughput, sfsync ({n:,} events)", f"{m['sfsync_events_per_s']:,.0f} events/s", "", ""),
        Check("throughput, bare Celery pipeline", f"{m['bare_events_per_s']:,.0f} events/s", "", ""),
        Check("throughput ratio sfsync / bare", f"{m['ratio']:.2f}", f">= {MIN_RATIO:.2f}",
              _verdict(m["ratio"] >= MIN_RATIO)),
    ]
    if "drain_ratio" in m:
        checks += [
            Check("drain, sfsync (queue pre-filled)", f"{m['sfsync_drain_events_per_s']:,.0f} events/s", "", ""),
            Check("drain, bare Celery pipeline", f"{m['bare_drain_events_per_s']:,.0f} events/s", "", ""),
            Check("drain ratio sfsync / bare", f"{m['drain_ratio']:.2f}", "", ""),
        ]
    checks += [
        Check("API calls per event (burst)", f"{m['api_calls_per_event']:.4f}", f"<= {MAX_CALLS_PER_EVENT}",
              _verdict(m["api_calls_per_event"] <= MAX_CALLS_PER_EVENT), gate=True),
    ]
    lat = results.get("latency")
    limit = results["config"]["flush_interval"] + LATENCY_SLACK
    if lat:
        label = f"@ {lat['rate']:.0f}/s for {lat['seconds']:.0f} s"
        checks += [
            Check(f"latency p50 {label}", f"{lat['p50_s']:.3f} s", "", ""),
            Check(f"latency p99 {label}", f"{lat['p99_s']:.3f} s", f"<= {limit:.1f} s", _verdict(lat["p99_s"] <= limit)),
            Check(f"latency max {label}", f"{lat['max_s']:.3f} s", "", ""),
        ]
    else:
        checks.append(Check("latency p99", "-", f"<= {limit:.1f} s", "not run"))
    first = results.get("memory_first")
    if first:
        checks.append(Check(f"worker peak RSS/process after {first['after_events']:,} events",
                            f"{first['max_hwm_mb']:.1f} MB", f"< {MAX_RSS_MB:.0f} MB",
                            _verdict(first["max_hwm_mb"] < MAX_RSS_MB)))
    longm = results.get("memory_long")
    if longm and first:
        growth = _growth(first, longm)
        checks += [
            Check(f"worker peak RSS/process after {longm['after_events']:,} events", f"{longm['max_hwm_mb']:.1f} MB",
                  f"< {MAX_RSS_MB:.0f} MB", _verdict(longm["max_hwm_mb"] < MAX_RSS_MB)),
            Check("RSS growth, largest per process", f"{growth * 100:+.1f} %", f"<= {MAX_GROWTH * 100:.0f} %",
                  _verdict(growth <= MAX_GROWTH)),
        ]
    else:
        checks.append(Check("worker RSS flat 10k -> 100k events", "-", f"<= {MAX_GROWTH * 100:.0f} % growth",
                            "not run (--long)"))
    return checks


def _growth(first: dict[str, Any], later: dict[str, Any]) -> float:
    """Largest relative growth of a process's peak RSS (pids are stable: the pool does not recycle)."""
    before = {r["pid"]: r["hwm_kb"] for r in first["processes"]}
    growths = [(r["hwm_kb"] - before[r["pid"]]) / before[r["pid"]] for r in later["processes"]
               if before.get(r["pid"])]
    return max(growths) if growths else float("nan")


def render(results: dict[str, Any], checks: list[Check]) -> str:
    c = results["config"]
    lines = [(f"sfsync benchmark: {c['events']:,} events/burst, concurrency {c['concurrency']}, "
             f"batch {c['batch_size']}, flush {c['flush_interval']} s, {c['contacts']:,} contacts, "
             f"{c['repeat']} repeat(s) (medians), {results['machine']['cpus']} CPUs, "
             f"run took {results.get('wall_seconds', 0):.0f} s"), ""]
    widths = (max(len(x.name) for x in checks), max(len(x.value) for x in checks),
              max(len(x.target) for x in checks) + 2)
    head = ("figure", "value", "target", "result")
    lines.append(f"{head[0]:<{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:<{widths[2]}}  {head[3]}")
    lines.append("-" * (sum(widths) + 14))
    for x in checks:
        lines.append(f"{x.name:<{widths[0]}}  {x.value:>{widths[1]}}  {x.target:<{widths[2]}}  {x.result}")
    s = results["sfsync"]
    mid = sorted(s, key=lambda r: r["events_per_s"])[len(s) // 2]
    lines += ["", "median sfsync burst:",
              (f"  publish {mid['publish_seconds']:.2f} s of {mid['seconds']:.2f} s; API calls {mid['api_calls']} "
              f"by route {dict(sorted(mid['api_calls_by_route'].items()))}"),
              f"  outcomes {dict(sorted(mid['outcomes'].items()))}",
              f"  CPU seconds during the burst ({results['machine']['cpus']} cores x {mid['seconds']:.1f} s = "
              f"{results['machine']['cpus'] * mid['seconds']:.1f} available): " + _cpu(mid["cpu_seconds"])]
    per_10k = results.get("median", {}).get("cpu_per_10k_events")
    if per_10k:
        lines.append("  CPU seconds per 10,000 events, medians of the bursts: " + ", ".join(
            f"{k} {v:.2f}" for k, v in per_10k.items()))
    relative = results.get("median", {}).get("cpu_per_publisher_second")
    if relative:
        lines.append("  CPU seconds per CPU second of the publisher in the same burst (compares code across runs "
                     "on a machine whose speed drifts), medians: " + ", ".join(
                         f"{k} {v:.2f}" for k, v in relative.items()))
    b = sorted(results["bare"], key=lambda r: r["events_per_s"])[len(results["bare"]) // 2]
    lines.append(f"  median bare burst: publish {b['publish_seconds']:.2f} s of {b['seconds']:.2f} s; CPU seconds "
                 + _cpu(b["cpu_seconds"]))
    if len(s) > 1:
        lines.append("  all repeats, sfsync events/s: " + ", ".join(f"{r['events_per_s']:.0f}" for r in s)
                     + "; bare: " + ", ".join(f"{r['events_per_s']:.0f}" for r in results["bare"]))
    drains = results.get("sfsync_drain")
    if drains:
        d = sorted(drains, key=lambda r: r["events_per_s"])[len(drains) // 2]
        bd = sorted(results["bare_drain"], key=lambda r: r["events_per_s"])[len(drains) // 2]
        lines.append(f"  median sfsync drain: {d['seconds']:.2f} s, {d['api_calls']} API calls; CPU seconds "
                     + _cpu(d["cpu_seconds"]))
        lines.append(f"  median bare drain: {bd['seconds']:.2f} s; CPU seconds " + _cpu(bd["cpu_seconds"]))
        lines.append("  all repeats, drain events/s, sfsync: " + ", ".join(f"{r['events_per_s']:.0f}" for r in drains)
                     + "; bare: " + ", ".join(f"{r['events_per_s']:.0f}" for r in results["bare_drain"]))
    prof = results.get("profile")
    for name, roles in ((prof or {}).get("top") or {}).items():
        for role, top in roles.items():
            lines += ["", f"py-spy, {name} {role} process(es): {top['busy_samples']} busy samples; top self time"]
            lines += [f"  {pct:5.1f} %  {frame}" for frame, pct in top["self"]]
            if top["ours"]:
                lines += ["  sfsync functions, inclusive:"]
                lines += [f"  {pct:5.1f} %  {frame}" for frame, pct in top["ours"]]
    return "\n".join(lines)


def _cpu(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + f" (total {sum(seconds.values()):.1f})"


# --- many workspaces -------------------------------------------------------------------------

#: API calls per event over every org, many workspaces with Zipf traffic
MAX_MULTI_CALLS_PER_EVENT = 0.02
#: calls an org in an outage may receive while it is down ("a handful of probes")
MAX_OUTAGE_CALLS = 10


def _spread(s: dict[str, Any], fmt: str, unit: str = "") -> str:
    """A median with its spread over repeats: `1.23 s (1.10-1.40)`."""
    text = f"{s['median']:{fmt}}{unit}"
    return text + (f" ({s['min']:{fmt}}-{s['max']:{fmt}})" if len(s["runs"]) > 1 else "")


def multi_targets(results: dict[str, Any]) -> list[Check]:
    c = results["config"]
    limit = c["linger"] + LATENCY_SLACK
    return {"multi": _multi_checks, "isolation": _isolation_checks,
            "fairness": _fairness_checks}[c["scenario"]](results, c, limit)


def _multi_checks(results: dict[str, Any], c: dict[str, Any], limit: float) -> list[Check]:
    s = results["summary"]
    calls = s["api_calls_per_event"]["median"]
    checks = [
        Check(f"throughput, sfsync ({c['events']:,} events, {c['workspaces']} ws)",
              _spread(s["sfsync_events_per_s"], ",.0f", " ev/s"), "", ""),
        Check("throughput, anchor (same bundles and collection calls)",
              _spread(s["bare_events_per_s"], ",.0f", " ev/s"), "", ""),
        Check("throughput ratio sfsync / anchor", _spread(s["ratio"], ".2f"), f">= {MIN_RATIO:.2f}",
              _verdict(s["ratio"]["median"] >= MIN_RATIO)),
        Check("API calls per event (burst, every org)", _spread(s["api_calls_per_event"], ".4f"),
              f"<= {MAX_MULTI_CALLS_PER_EVENT}", _verdict(calls <= MAX_MULTI_CALLS_PER_EVENT), gate=c["ci"]),
    ]
    steady = results.get("steady")
    if steady:
        p99 = [w["p99_s"] for w in steady["per_workspace"].values()]
        label = f"@ {steady['rate']:.0f}/s for {steady['seconds']:.0f} s"
        checks += [
            Check(f"API calls per event (steady {label})", f"{steady['api_calls_per_event']:.4f}", "", ""),
            Check(f"latency p99, median workspace {label}", f"{statistics.median(p99):.3f} s", "", ""),
            Check(f"latency p99, worst workspace {label}", f"{max(p99):.3f} s", f"<= {limit:.1f} s",
                  _verdict(max(p99) <= limit)),
        ]
    mem = results.get("memory_after") or results.get("memory")
    if mem:
        checks.append(Check(f"worker peak RSS/process, {c['workspaces']} ws connected", f"{mem['max_hwm_mb']:.1f} MB",
                            f"< {MAX_RSS_MB:.0f} MB", _verdict(mem["max_hwm_mb"] < MAX_RSS_MB)))
    return checks


def _isolation_checks(results: dict[str, Any], c: dict[str, Any], limit: float) -> list[Check]:
    s = results["summary"]
    return [
        Check("others' latency p99, worst workspace", _spread(s["others_p99_max_s"], ".3f", " s"), f"<= {limit:.1f} s",
              _verdict(s["others_p99_max_s"]["median"] <= limit)),
        Check("others' latency p99, median workspace", _spread(s["others_p99_median_s"], ".3f", " s"), "", ""),
        Check(f"calls to {results['broken']} during its {results['outage_seconds']:.0f} s outage",
              _spread(s["outage_calls"], ".0f"), f"<= {MAX_OUTAGE_CALLS}",
              _verdict(s["outage_calls"]["median"] <= MAX_OUTAGE_CALLS)),
        Check(f"{results['broken']}'s backlog written, seconds after the outage",
              _spread(s["backlog_written_after_s"], ".1f", " s"), "", ""),
    ]


def _fairness_checks(results: dict[str, Any], c: dict[str, Any], limit: float) -> list[Check]:
    s = results["summary"]
    return [
        Check(f"latency p99 of {results['smallest']} (smallest) during the burst",
              _spread(s["smallest_p99_s"], ".3f", " s"), f"<= {limit:.1f} s",
              _verdict(s["smallest_p99_s"]["median"] <= limit)),
        Check("others' latency p99, worst workspace", _spread(s["others_p99_max_s"], ".3f", " s"), "", ""),
        Check("others' latency p99, median workspace", _spread(s["others_p99_median_s"], ".3f", " s"), "", ""),
        Check(f"{results['burster']}'s {results['burst']:,} events (published as {c.get('burst_as', 'sfsync')}) "
              f"written in", _spread(s["burst_seconds"], ".1f", " s"), "", ""),
    ]


def render_multi(results: dict[str, Any], checks: list[Check]) -> str:
    c, m = results["config"], results["machine"]
    lines = [(f"sfsync benchmark, {c['workspaces']} workspaces ({c['scenario']}): Zipf s={c['zipf']}, linger "
             f"(max_latency_seconds) {c['linger']} s, concurrency {c['concurrency']}, batch {c['batch_size']}, "
             f"{c['contacts']} contacts/org, {c['repeat']} repeat(s) (median (min-max)), {m['cpus']} CPUs, load "
             f"{m['load_average'][0]:.1f}, run took {results.get('wall_seconds', 0):.0f} s"), ""]
    widths = (max(len(x.name) for x in checks), max(len(x.value) for x in checks),
              max(len(x.target) for x in checks) + 2)
    lines.append(f"{'figure':<{widths[0]}}  {'value':>{widths[1]}}  {'target':<{widths[2]}}  result")
    lines.append("-" * (sum(widths) + 14))
    lines += [f"{x.name:<{widths[0]}}  {x.value:>{widths[1]}}  {x.target:<{widths[2]}}  {x.result}" for x in checks]
    for run in results.get("sfsync", []):
        lines.append(f"  sfsync burst: {run['seconds']:.1f} s (publish {run['publish_seconds']:.1f} s), "
                     f"{run['api_calls']} calls {run['by_route']}, {run['token_grants']} token grants")
    for run in results.get("bare", []):
        lines.append(f"  anchor burst: {run['seconds']:.1f} s (publish {run['publish_seconds']:.1f} s), "
                     f"{run.get('collection_calls', '?')} collection calls, {run['failed_calls']} failed")
    steady = results.get("steady")
    if steady:
        lines.append(f"  steady: {steady['events']} events, {steady['api_calls']} calls {steady['by_route']}")
    for run in results.get("runs", []):
        lines.append("  run: " + ", ".join(f"{k} {v}" for k, v in run.items() if k != "per_workspace"))
    return "\n".join(lines)

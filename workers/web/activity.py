"""The live charts of the Overview and workspace pages, read from the per-minute rollup (events/rollup.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.rollup import KINDS, MINUTE, Point, Rollup, minute_of, percentile, points
from schemas.workspace import is_workspace_id
from workers.web import charts
from workers.web.charts import Chart, Series, quantity
from workers.web.rendering import render
from workers.web.security import requires


@dataclass(frozen=True)
class Span:
    """A time range the charts can show: how many minutes, how many per point, how often the page refreshes."""

    name: str
    label: str
    minutes: int
    per: int
    refresh: int


SPANS = {s.name: s for s in (Span("1h", "last hour", 60, 1, 5), Span("6h", "last 6 hours", 360, 5, 15),
                             Span("24h", "last 24 hours", 1440, 15, 30), Span("3d", "last 3 days", 4320, 60, 60))}
DEFAULT_SPAN = "1h"
#: outcome kinds shown as bars, bottom to top
SHOWN_KINDS = ("written", "skipped", "dead_lettered")
KIND_LABELS = {"written": "written", "skipped": "skipped", "dead_lettered": "dead-lettered"}


def span_of(name: str | None) -> Span:
    return SPANS.get(name or "", SPANS[DEFAULT_SPAN])


def read_points(client: Any, workspace_id: str | None, span: Span, now: float | None = None) -> list[Point]:
    """The span's points ending with the current minute; points start on whole multiples of their width."""
    last = minute_of(time.time() if now is None else now)
    first = last - span.minutes + 1
    first -= first % span.per
    return points(Rollup(client).minutes(workspace_id, first, last), span.per)


def _per(span: Span) -> str:
    return "minute" if span.per == 1 else f"{span.per} minutes" if span.per < 60 else \
        ("hour" if span.per == 60 else f"{span.per // 60} hours")


def events_chart(pts: list[Point], span: Span, scope: str) -> Chart:
    totals = {k: sum(p.counts.get(k, 0) for p in pts) for k in KINDS}
    busiest = max(pts, key=lambda p: sum(p.counts.get(k, 0) for k in SHOWN_KINDS), default=None)
    words = ", ".join(f"{totals[k]:,} {KIND_LABELS[k]}" for k in SHOWN_KINDS)
    summary = f"{scope}, {span.label}: {words}."
    if busiest is not None and sum(busiest.counts.get(k, 0) for k in SHOWN_KINDS) != 0:
        summary += (f" Busiest: {charts.clock(busiest.start, span.per * MINUTE)} UTC with "
                    f"{sum(busiest.counts.get(k, 0) for k in SHOWN_KINDS):,}.")
    return Chart(id="chart-events", title=f"Events per {_per(span)}", kind="bars",
                 times=[p.start for p in pts], step=span.per * MINUTE, unit="",
                 series=[Series(k, KIND_LABELS[k], [float(p.counts.get(k, 0)) for p in pts]) for k in SHOWN_KINDS],
                 summary=summary, totals={k: float(v) for k, v in totals.items()})


def backlog_chart(pts: list[Point], span: Span, scope: str, shared: bool) -> Chart:
    names: tuple[tuple[str, str], ...] = (("queued", "on the queues"), ("unacked", "in flight")) if shared else ()
    names += (("retries", "retries waiting"), ("parked", "parked"), ("overflow", "in overflow"))
    series = [Series(k, label, [float(p.backlog.get(k, 0)) if p.backlog is not None else None for p in pts])
              for k, label in names]
    latest = next((p for p in reversed(pts) if p.backlog is not None), None)
    if latest is None:
        summary = f"{scope}, {span.label}: no worker sampled the backlog (is any worker running?)."
        totals: dict[str, float] = {}
    else:
        totals = {k: float(latest.backlog.get(k, 0)) for k, _ in names}  # type: ignore[union-attr]  # has one
        summary = (f"{scope}, latest sample ({charts.clock(latest.start, span.per * MINUTE)} UTC): " +
                   ", ".join(f"{int(totals[k]):,} {label}" for k, label in names) + ".")
    return Chart(id="chart-backlog", title="Backlog", kind="lines", times=[p.start for p in pts],
                 step=span.per * MINUTE, series=series, summary=summary, totals=totals)


def latency_chart(pts: list[Point], span: Span, scope: str) -> Chart:
    merged: dict[int, int] = {}
    for p in pts:
        for bucket, n in p.latency.items():
            merged[bucket] = merged.get(bucket, 0) + n
    p50, p99 = percentile(merged, 50), percentile(merged, 99)
    summary = (f"{scope}, {span.label}: from publish to write, half the events took under {quantity(p50, 's')}, "
               f"99 in 100 under {quantity(p99, 's')}." if p50 is not None
               else f"{scope}, {span.label}: no event written, so no latency to show.")
    return Chart(id="chart-latency", title="Latency, publish to write", kind="lines", unit="s",
                 times=[p.start for p in pts], step=span.per * MINUTE,
                 series=[Series("p50", "p50", [p.p(50) for p in pts]), Series("p99", "p99", [p.p(99) for p in pts])],
                 summary=summary, totals={k: v for k, v in (("p50", p50), ("p99", p99)) if v is not None})


def api_chart(pts: list[Point], span: Span, scope: str, shared: bool) -> Chart:
    if shared:
        values = [p.api_top_share * 100 if p.api_top_share is not None else None for p in pts]
        latest = next((p for p in reversed(pts) if p.api_top_share is not None), None)
        # mypy does not see that `latest`, when there is one, has the value it was chosen for
        summary = (f"The busiest org has used {quantity(latest.api_top_share * 100, '%')} of its daily API allowance "  # type: ignore[operator]
                   f"({latest.api_top_workspace})." if latest else f"No org's API use was seen in the {span.label}.")
        return Chart(id="chart-api", title="API use of the busiest org (% of its daily allowance)", kind="lines",
                     unit="%", times=[p.start for p in pts], step=span.per * MINUTE,
                     series=[Series("api", "% of the allowance", _carried(values))], limit=100.0,
                     limit_label="allowance", summary=summary,
                     totals={"share": latest.api_top_share * 100} if latest else {})  # type: ignore[operator]
    values = [float(p.api_used) if p.api_used is not None else None for p in pts]
    latest = next((p for p in reversed(pts) if p.api_used is not None), None)
    limit = float(latest.api_limit) if latest and latest.api_limit else None
    summary = (f"{scope}: {latest.api_used:,} API calls used of the org's {latest.api_limit:,} a day "
               f"(rolling 24 hours)." if latest else f"{scope}: no API use seen in the {span.label}.")
    return Chart(id="chart-api", title="API calls used today, against the daily allowance", kind="lines",
                 times=[p.start for p in pts], step=span.per * MINUTE,
                 series=[Series("api", "calls used", _carried(values))], limit=limit,
                 limit_label=f"allowance {quantity(limit)}" if limit else "", summary=summary,
                 totals={"used": float(latest.api_used), "limit": limit or 0.0} if latest else {})  # type: ignore[arg-type]


def _carried(values: list[float | None]) -> list[float | None]:
    """A gauge read only when it changes: each value holds until the next reading (none before the first)."""
    out, last = [], None
    for value in values:
        last = value if value is not None else last
        out.append(last)
    return out


def activity(client: Any, workspace_id: str | None, span: Span, now: float | None = None) -> dict[str, Any]:
    pts = read_points(client, workspace_id, span, now)
    scope = "All workspaces" if workspace_id is None else f"Workspace {workspace_id}"
    shared = workspace_id is None
    made = [events_chart(pts, span, scope), backlog_chart(pts, span, scope, shared), latency_chart(pts, span, scope),
            api_chart(pts, span, scope, shared)]
    return {"charts": [{"chart": c, "svg": charts.render(c), "rows": _rows(c)} for c in made], "span": span,
            "spans": list(SPANS.values()), "workspace": workspace_id}


def _rows(chart: Chart) -> list[dict[str, Any]]:
    """The chart's values as table rows (newest first), for screen readers and anyone who wants the numbers."""
    rows = []
    for i in reversed(range(len(chart.times))):
        values = [s.values[i] for s in chart.series]
        if all(v is None or v == 0 for v in values) and chart.kind == "bars":
            continue
        rows.append({"time": chart.times[i], "label": charts.clock(chart.times[i], chart.step),
                     "values": [quantity(v, chart.unit) for v in values]})
    return rows


@requires("viewer")
async def overview_activity(request: Request) -> Response:
    span = span_of(request.query_params.get("range"))
    return render(request, "_activity.html", activity=activity(request.app.state.redis, None, span))


@requires("viewer")
async def workspace_activity(request: Request) -> Response:
    ws = request.path_params["ws"]
    if not is_workspace_id(ws):
        return render(request, "error.html", status_code=404, title="No such workspace",
                      message="This is not a workspace id.")
    span = span_of(request.query_params.get("range"))
    return render(request, "_activity.html", activity=activity(request.app.state.redis, ws, span))


def routes() -> list[Route]:
    return [Route("/activity", overview_activity), Route("/workspaces/{ws}/activity", workspace_activity)]

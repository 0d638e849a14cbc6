"""Charts drawn on the server as SVG: stacked bars, lines with gaps, a limit line and sparklines; no script needed.

Every chart is an image named by its title and a sentence saying what it shows, each column
carries a tooltip, and the page shows the same values as a table for screen readers and for
anyone who wants the numbers. Positions across are percentages, so the plot takes the width it
is given while its text keeps its size. Colours come from console.css classes (`s-<series>`),
so the Content-Security-Policy needs no inline style.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from markupsafe import Markup, escape

#: the plot's height and its margins (pixels); its width is the page's, so x positions are percentages and
#: text keeps its size on a phone as on a laptop
HEIGHT, TOP, BOTTOM = 190, 10, 24
#: the width of the value axis beside the plot (pixels)
AXIS = 52


@dataclass(frozen=True)
class Series:
    """One named series; None where nothing is known (drawn as a gap, not as zero)."""

    key: str
    label: str
    values: list[float | None]


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    #: "bars" (stacked) or "lines"
    kind: str
    #: start (Unix seconds) of each point, and the seconds each point covers
    times: list[float]
    step: int
    series: list[Series]
    unit: str = ""
    #: a reference line (a daily allowance), drawn dashed
    limit: float | None = None
    limit_label: str = ""
    #: one sentence saying what the chart shows, read out instead of the drawing
    summary: str = ""
    #: totals per series key for the page (and its tests) to read without parsing the drawing
    totals: dict[str, float] = field(default_factory=dict)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value * (1 - 1e-9):
            return factor * power
    return 10 * power


def quantity(value: float | None, unit: str = "") -> str:
    """A value as a person reads it: 1,234 · 12.5k · 850 ms · 4.2 s · 3 min · 2.1 h."""
    if value is None:
        return "no data"
    if unit == "s":
        if value < 1:
            return f"{value * 1000:.0f} ms"
        if value < 60:
            return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
        if value < 3600:
            return f"{value / 60:.1f} min" if value < 600 else f"{value / 60:.0f} min"
        return f"{value / 3600:.1f} h"
    if unit == "%":
        return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k" if abs(value) < 100_000 else f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def clock(at: float, step: int) -> str:
    """A point's time as an axis label: HH:MM, with the day when points are an hour or longer."""
    moment = datetime.fromtimestamp(at, timezone.utc)
    return moment.strftime("%d %b %H:%M") if step >= 3600 else moment.strftime("%H:%M")


def _y(value: float, top: float) -> float:
    plot = HEIGHT - TOP - BOTTOM
    return round(TOP + plot - plot * (value / top), 2)


def _pct(value: float) -> str:
    return f"{round(value, 3)}%"


def _column_title(chart: Chart, index: int) -> str:
    values = ", ".join(f"{quantity(s.values[index], chart.unit)} {s.label}" for s in chart.series)
    return f"{clock(chart.times[index], chart.step)} UTC: {values}"


def _axis(chart: Chart, top: float) -> str:
    """The value axis: a narrow drawing of its own, so the plot beside it can take whatever width is left."""
    parts = [f'<svg class="y-axis" width="{AXIS}" height="{HEIGHT}" aria-hidden="true" focusable="false">']
    for share in (0, 0.5, 1):
        parts.append(f'<text class="axis" x="{AXIS - 6}" y="{_y(top * share, top) + 4}" text-anchor="end">'
                     f'{escape(quantity(top * share, chart.unit))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(chart: Chart) -> Markup:
    """The chart: an image (role img, named by its title and summary) of a value axis and a plot."""
    n = len(chart.times)
    if chart.kind == "bars":
        peak = max((sum(s.values[i] or 0 for s in chart.series) for i in range(n)), default=0)
    else:
        peak = max((v for s in chart.series for v in s.values if v is not None), default=0)
    if chart.limit is not None:
        peak = max(peak, chart.limit)
    top = nice_ceiling(peak)
    width = 100 / max(n, 1)
    parts = [(f'<div class="chart" id="{escape(chart.id)}" role="img" '
              f'aria-label="{escape(chart.title)}. {escape(chart.summary)}">'), _axis(chart, top),
             f'<svg class="plot" width="100%" height="{HEIGHT}" aria-hidden="true" focusable="false">']
    for share in (0, 0.5, 1):
        y = _y(top * share, top)
        parts.append(f'<line class="grid" x1="0" x2="100%" y1="{y}" y2="{y}"/>')
    if n:
        for index, anchor in ((0, "start"), (n // 2, "middle"), (n - 1, "end")):
            x = width * index + (width if anchor == "end" else width / 2 if anchor == "middle" else 0)
            parts.append(f'<text class="axis axis-time" x="{_pct(x)}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                         f'{escape(clock(chart.times[index], chart.step))}</text>')
    if chart.kind == "bars":
        for i in range(n):
            base = 0.0
            for s in chart.series:
                value = s.values[i] or 0
                if value <= 0:
                    continue
                y0, y1 = _y(base, top), _y(base + value, top)
                parts.append(f'<rect class="s-{s.key}" x="{_pct(width * i + width * 0.1)}" y="{y1}" '
                             f'width="{_pct(width * 0.8)}" height="{round(max(y0 - y1, 0.5), 2)}"/>')
                base += value
    else:
        for s in chart.series:
            previous: tuple[float, float] | None = None
            for i, value in enumerate(s.values):  # type: ignore[assignment]  # the name is reused
                if value is None:
                    previous = None  # a gap: nothing is known here
                    continue
                point = (width * (i + 0.5), _y(value, top))
                if previous is not None:
                    parts.append(f'<line class="line s-{s.key}" x1="{_pct(previous[0])}" y1="{previous[1]}" '
                                 f'x2="{_pct(point[0])}" y2="{point[1]}"/>')
                elif i + 1 >= len(s.values) or s.values[i + 1] is None:  # a lone value between gaps: a dot
                    parts.append(f'<circle class="s-{s.key}" cx="{_pct(point[0])}" cy="{point[1]}" r="2.5"/>')
                previous = point
    if chart.limit is not None:
        y = _y(chart.limit, top)
        parts.append(f'<line class="limit" x1="0" x2="100%" y1="{y}" y2="{y}"/>')
        parts.append(f'<text class="axis limit-label" x="100%" dx="-4" y="{y - 4}" text-anchor="end">'
                     f'{escape(chart.limit_label)}</text>')
    # a transparent column per point carries its values as a tooltip
    for i in range(n):
        parts.append(f'<rect class="hit" x="{_pct(width * i)}" y="{TOP}" width="{_pct(width)}" '
                     f'height="{HEIGHT - TOP - BOTTOM}"><title>{escape(_column_title(chart, i))}</title></rect>')
    if not any(v for s in chart.series for v in s.values):
        parts.append(f'<text class="axis empty-note" x="50%" y="{HEIGHT / 2}" text-anchor="middle">'
                     f'nothing in this period</text>')
    parts.append("</svg></div>")
    return Markup("".join(parts))  # noqa: S704 - texts went through escape(); keys are the code's own


def sparkline(values: list[int], label: str, width: int = 120, height: int = 24) -> Markup:
    """A tiny bar chart (one bar per value) with its values in words as the accessible name."""
    top = max(values, default=0) or 1
    bar = width / max(len(values), 1)
    parts = [(f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
              f'aria-label="{escape(label)}" focusable="false">'),
             f'<line class="grid" x1="0" x2="{width}" y1="{height - 0.5}" y2="{height - 0.5}"/>']
    for i, value in enumerate(values):
        if value > 0:
            h = max(height * value / top, 1.5)
            parts.append(f'<rect class="s-spark" x="{round(i * bar + bar * 0.1, 2)}" y="{round(height - h, 2)}" '
                         f'width="{round(max(bar * 0.8, 1), 2)}" height="{round(h, 2)}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - the label went through escape(), the rest are numbers

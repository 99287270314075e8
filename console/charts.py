"""Small server-rendered SVG charts for the report pages: bars (grouped or stacked) and
lines, with axis labels and a ``<title>``/``<desc>`` pair for screen readers.

No JavaScript and no inline styles (the console's CSP forbids both): every mark carries a
class (``chart-series-0`` …) that ``static/style.css`` colours. Every piece of text is
escaped; labels may come from data (a substance, an FAQ entry id). The figures are
always in a table next to the chart, which stays the accessible source of truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 260
LEFT = 52  # room for the y tick labels and the axis title
RIGHT = 12
TOP = 16
BOTTOM = 56  # room for the x labels and the axis title
LEGEND_ROW = 18
SERIES_CLASSES = 8  # style.css colours .chart-series-0 … -7, then they repeat

Series = tuple[str, Sequence[float | None]]


def nice_ticks(maximum: float, *, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum``: steps of 1, 2 or 5 × 10ⁿ, at most
    ``count`` steps (whole numbers for counts up to small values)."""
    if maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if maximum >= 1:
        step = max(step, 1.0)
    top = math.ceil(maximum / step - 1e-9) * step
    return [round(i * step, 10) for i in range(round(top / step) + 1)]


def _number(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}"


def _frame(
    *, ident: str, title: str, desc: str, legend: Sequence[str], css: str
) -> tuple[list[str], float]:
    """The opening of the SVG (with its accessible name and a legend row when several
    series are drawn); returns the parts and the y where the plot starts."""
    legend_height = LEGEND_ROW if len(legend) > 1 else 0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css}" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + legend_height}" '
        f'aria-labelledby="{escape(ident)}-title {escape(ident)}-desc">',
        f'<title id="{escape(ident)}-title">{escape(title)}</title>',
        f'<desc id="{escape(ident)}-desc">{escape(desc)}</desc>',
    ]
    if legend_height:
        x = float(LEFT)
        for i, name in enumerate(legend):
            parts.append(
                f'<rect class="chart-series-{i % SERIES_CLASSES}" x="{x:.1f}" y="4" '
                'width="10" height="10"/>'
            )
            parts.append(
                f'<text class="chart-legend" x="{x + 14:.1f}" y="13">{escape(name)}</text>'
            )
            x += 22 + 7 * len(name)
    return parts, float(TOP + legend_height)


def _axes(
    parts: list[str],
    *,
    top: float,
    ticks: list[float],
    labels: Sequence[str],
    x_label: str,
    y_label: str,
) -> tuple[float, float, float]:
    """Grid lines, tick labels and axis titles; returns (plot bottom y, plot height,
    width of one x slot)."""
    bottom = top + (HEIGHT - TOP - BOTTOM)
    height = bottom - top
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / max(len(labels), 1)
    for tick in ticks:
        y = bottom - height * tick / ticks[-1]
        parts.append(
            f'<line class="chart-gridline" x1="{LEFT}" y1="{y:.1f}" '
            f'x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="chart-tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(tick)}</text>"
        )
    parts.append(
        f'<line class="chart-axis" x1="{LEFT}" y1="{bottom:.1f}" x2="{WIDTH - RIGHT}" '
        f'y2="{bottom:.1f}"/>'
    )
    # Long runs of labels: every n-th one, so they do not overlap.
    every = max(1, math.ceil(len(labels) / 13))
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + slot * (i + 0.5)
        parts.append(
            f'<text class="chart-tick" x="{x:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<text class="chart-axis-label" x="{LEFT + plot_width / 2:.1f}" '
        f'y="{bottom + 40:.1f}" text-anchor="middle">{escape(x_label)}</text>'
    )
    middle = top + height / 2
    parts.append(
        f'<text class="chart-axis-label" x="14" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(y_label)}</text>'
    )
    return bottom, height, slot


def bar_chart(
    *,
    ident: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    stacked: bool = False,
) -> Markup:
    """Vertical bars, one slot per label: side by side per series, or ``stacked``. Each
    bar has its own ``<title>`` ("series, label: value") for a pointer or a screen
    reader. ``ident`` makes the ids unique on the page."""
    values = [[v or 0.0 for v in vals] for _, vals in series]
    if stacked:
        peak = max((sum(col) for col in zip(*values, strict=True)), default=0.0)
    else:
        peak = max((v for vals in values for v in vals), default=0.0)
    ticks = nice_ticks(peak)
    parts, top = _frame(
        ident=ident, title=title, desc=desc, legend=[n for n, _ in series], css="chart-bars"
    )
    bottom, height, slot = _axes(
        parts, top=top, ticks=ticks, labels=labels, x_label=x_label, y_label=y_label
    )
    scale = height / ticks[-1]
    inner = slot * 0.8
    bar = inner if stacked else inner / max(len(series), 1)
    for i, label in enumerate(labels):
        base = bottom
        for s, (name, _) in enumerate(series):
            value = values[s][i]
            x = LEFT + slot * i + slot * 0.1 + (0 if stacked else bar * s)
            h = value * scale
            y = base - h if stacked else bottom - h
            parts.append(
                f'<rect class="chart-bar chart-series-{s % SERIES_CLASSES}" x="{x:.1f}" '
                f'y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{escape(name)}, {escape(label)}: {_number(value)}</title></rect>"
            )
            if stacked:
                base -= h
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    *,
    ident: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
) -> Markup:
    """Lines through one point per label and series; a missing value (None) breaks the
    line. Each point has a ``<title>`` with its value."""
    peak = max((v for _, vals in series for v in vals if v is not None), default=0.0)
    ticks = nice_ticks(peak)
    parts, top = _frame(
        ident=ident, title=title, desc=desc, legend=[n for n, _ in series], css="chart-lines"
    )
    bottom, height, slot = _axes(
        parts, top=top, ticks=ticks, labels=labels, x_label=x_label, y_label=y_label
    )
    scale = height / ticks[-1]
    for s, (name, vals) in enumerate(series):
        css = f"chart-series-{s % SERIES_CLASSES}"
        runs: list[list[str]] = [[]]
        points = []
        for i, value in enumerate(vals):
            if value is None:
                runs.append([])
                continue
            x = LEFT + slot * (i + 0.5)
            y = bottom - value * scale
            runs[-1].append(f"{x:.1f},{y:.1f}")
            points.append(
                f'<circle class="chart-point {css}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                f"<title>{escape(name)}, {escape(labels[i])}: {_number(value)}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="chart-line {css}" points="{" ".join(run)}"/>')
        parts.extend(points)
    parts.append("</svg>")
    return Markup("".join(parts))

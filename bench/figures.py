"""What a benchmark reports: figures with their baseline, ratio and target, and how they
are printed (a text table), written (JSON) and recorded (``docs/benchmarks.md``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FIELDS = ("name", "value", "unit", "baseline", "ratio", "target", "met")


@dataclass(frozen=True)
class Figure:
    """One measured figure.

    ``baseline`` is what it was compared to, measured in the same run (None when there is
    no meaningful floor); ``ratio`` is value / baseline. ``target`` says in words what the
    ratio (or value) must reach, and ``met`` whether it did (None: no target).
    ``baseline_label`` names the baseline for the table; ``note`` is a short remark.
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def as_json(self) -> dict[str, Any]:
        """The figure in the schema ``--json`` writes."""
        ratio = self.ratio
        return {
            "name": self.name,
            "value": _finite(self.value),
            "unit": self.unit,
            "baseline": _finite(self.baseline),
            "ratio": None if ratio is None else round(ratio, 4),
            "target": self.target or None,
            "met": self.met,
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 4)


def at_least(ratio: float | None, floor: float) -> bool | None:
    return None if ratio is None else ratio >= floor


def at_most(ratio: float | None, ceiling: float) -> bool | None:
    return None if ratio is None else ratio <= ceiling


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between closest ranks
    (numpy's default method), without numpy. Raises ValueError on no values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def number(value: float | None) -> str:
    """A figure as people read it: three significant digits, thousands separated."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def verdict(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return "met" if figure.met else "NOT MET"


def rows(figures: Iterable[Figure]) -> list[list[str]]:
    """The table's cells: figure, value, baseline, ratio, target, verdict."""
    out = []
    for f in figures:
        baseline = f"{number(f.baseline)} {f.unit}" if f.baseline is not None else "—"
        if f.baseline_label:
            baseline += f" ({f.baseline_label})"
        ratio = f.ratio
        out.append(
            [
                f.name,
                f"{number(f.value)} {f.unit}",
                baseline,
                "—" if ratio is None else f"{ratio:.2f}×",
                f.target or "—",
                verdict(f),
            ]
        )
    return out


HEADER = ["figure", "value", "baseline (same run)", "ratio", "target", ""]


def format_table(figures: Sequence[Figure]) -> str:
    """A fixed-width text table for the terminal."""
    table = [HEADER, *rows(figures)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = []
    for i, row in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(figures: Sequence[Figure]) -> str:
    table = [HEADER, *rows(figures)]
    head = "| " + " | ".join(_cell(c) for c in table[0]) + " |"
    rule = "|" + "|".join("---" for _ in HEADER) + "|"
    body = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table[1:]]
    return "\n".join([head, rule, *body])


def write_json(figures: Sequence[Figure], path: Path) -> None:
    """Every figure as ``{"name", "value", "unit", "baseline", "ratio", "target", "met"}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps([f.as_json() for f in figures], indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def as_dict(figure: Figure) -> dict[str, Any]:
    return asdict(figure)

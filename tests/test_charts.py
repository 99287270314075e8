"""The SVG charts: well-formed XML, an accessible name, escaped labels, bars and points
where the values say, no inline style."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from console.charts import bar_chart, line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_nice_ticks_are_round_and_cover_the_maximum() -> None:
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(4) == [0, 1, 2, 3, 4]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(93) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0.3) == [0, 0.1, 0.2, 0.3]


def test_a_bar_chart_is_well_formed_and_has_an_accessible_name() -> None:
    svg = _parse(
        bar_chart(
            ident="answers",
            title="Answers <per> week",
            desc="10 Nov: 3, 17 Nov: 6",
            labels=["10 Nov", "17 Nov"],
            series=[("Answers", [3, 6])],
            x_label="Week starting",
            y_label="Answers",
        )
    )
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "answers-title answers-desc"
    title = svg.find(f"{SVG}title")
    assert title is not None and title.get("id") == "answers-title"
    assert title.text == "Answers <per> week"  # escaped in the markup, text when parsed
    desc = svg.find(f"{SVG}desc")
    assert desc is not None and desc.text == "10 Nov: 3, 17 Nov: 6"
    bars = svg.findall(f"{SVG}rect[@class='chart-bar chart-series-0']")
    assert [b.findtext(f"{SVG}title") for b in bars] == [
        "Answers, 10 Nov: 3",
        "Answers, 17 Nov: 6",
    ]
    # Heights are proportional to the values (the top tick is 6).
    heights = [float(b.get("height", "")) for b in bars]
    assert heights[1] == 2 * heights[0]
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Week starting" in texts and "Answers" in texts and "10 Nov" in texts
    assert all(e.get("style") is None for e in svg.iter())


def test_stacked_bars_sit_on_each_other() -> None:
    svg = _parse(
        bar_chart(
            ident="o",
            title="Outcomes",
            desc="d",
            labels=["w1"],
            series=[("Answered", [2]), ("Open", [3])],
            x_label="x",
            y_label="y",
            stacked=True,
        )
    )
    answered, opened = svg.findall(f"{SVG}rect[@width]")[-2:]
    assert float(opened.get("y", "")) + float(opened.get("height", "")) == float(
        answered.get("y", "")
    )
    assert answered.get("x") == opened.get("x")
    legend = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "chart-legend"]
    assert legend == ["Answered", "Open"]


def test_a_line_chart_breaks_at_missing_values_and_escapes_labels() -> None:
    markup = line_chart(
        ident="delays",
        title="Time to first answer",
        desc="d",
        labels=["a", "b", "c", "<script>"],
        series=[("Median", [10, None, 20, 30]), ("=evil", [1, 2, 3, 4])],
        x_label="Week",
        y_label="Minutes",
    )
    assert "<script>" not in markup
    svg = _parse(markup)
    lines = svg.findall(f"{SVG}polyline")
    # Median: one run of one point (no line) and one of two; the other series one run.
    assert len(lines) == 2
    points = svg.findall(f"{SVG}circle")
    assert len(points) == 7
    assert points[-1].findtext(f"{SVG}title") == "=evil, <script>: 4"


def test_an_empty_chart_is_still_valid() -> None:
    svg = _parse(
        line_chart(
            ident="e",
            title="Nothing",
            desc="No data.",
            labels=[],
            series=[],
            x_label="x",
            y_label="y",
        )
    )
    assert svg.findtext(f"{SVG}title") == "Nothing"

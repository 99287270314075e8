"""Reports for coordinators (figures per week as tables, charts and CSV, and as JSON under
/api/v1/reports) and Signals for experts and coordinators. The queries are in
bot/reports.py and bot/signals.py; the charts in console/charts.py."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from bot.models import Role, User, utcnow
from bot.reports import OUTCOMES, Figures, Report, build_report, default_period
from bot.signals import Signals, find_signals
from console import charts, dates, i18n
from console.auth import require, runtime
from console.i18n import gettext
from console.pages import render

router = APIRouter()

Coordinator = Annotated[User, Depends(require(Role.COORDINATOR, page=True))]
ApiCoordinator = Annotated[User, Depends(require(Role.COORDINATOR))]
Expert = Annotated[User, Depends(require(Role.EXPERT, Role.COORDINATOR, page=True))]
LANGUAGES = ("nl", "fr", "en")
#: CSV cells starting with these are formulas to a spreadsheet: they get a leading quote
#: (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _date(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: expected a date like 2026-11-24"
        ) from None


async def _report(
    request: Request, start: str, end: str, channel: str, language: str
) -> tuple[Report, dict[str, str]]:
    """Read and check the period and filters (422 naming a wrong one), then build it."""
    first, last = default_period(utcnow().date())
    first = _date(start, "from") or first
    last = _date(end, "to") or last
    channel_id = None
    if channel:
        try:
            channel_id = int(channel)
        except ValueError:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "channel: expected a channel number"
            ) from None
    if language and language not in LANGUAGES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "language: nl, fr or en")
    try:
        report = await build_report(
            runtime(request).store,
            first,
            last,
            channel_id=channel_id,
            language=language or None,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"period: {exc}") from None
    filters = {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "channel": channel,
        "language": language,
    }
    return report, filters


From = Annotated[str, Query(alias="from", max_length=20)]
To = Annotated[str, Query(alias="to", max_length=20)]
Channel = Annotated[str, Query(max_length=20)]
Language = Annotated[str, Query(max_length=5)]


def minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def duration(seconds: float | None) -> str:
    """A delay as people say it, in the reader's language: 45 s, 12 min, 3,5 uur, 2,1 j."""
    return dates.duration(seconds, language=i18n.current())


def _label(week: Figures) -> str:
    return dates.week_label(week.start, language=i18n.current())


def _charts(report: Report) -> dict[str, Markup]:
    labels = [_label(w) for w in report.weeks]
    weeks = report.weeks
    delays = [w.p90_seconds for w in weeks if w.p90_seconds is not None]
    in_hours = bool(delays) and max(delays) >= 3 * 3600
    unit, per = (gettext("Hours"), 3600.0) if in_hours else (gettext("Minutes"), 60.0)
    week = gettext("Week starting")
    cases = gettext("Cases")

    def scaled(values: list[float | None]) -> list[float | None]:
        return [None if v is None else round(v / per, 1) for v in values]

    top = report.substances[:5]
    return {
        "answers": charts.bar_chart(
            ident="chart-answers",
            title=gettext("Answers given per week"),
            desc=", ".join(f"{_label(w)}: {w.answers}" for w in weeks),
            labels=labels,
            series=[(gettext("Answers"), [w.answers for w in weeks])],
            x_label=week,
            y_label=gettext("Answers"),
        ),
        "delays": charts.line_chart(
            ident="chart-delays",
            title=gettext("Time to first answer per week (%(unit)s)", unit=unit.lower()),
            desc=", ".join(
                gettext(
                    "%(week)s: median %(median)s, 90th percentile %(p90)s",
                    week=_label(w),
                    median=duration(w.median_seconds),
                    p90=duration(w.p90_seconds),
                )
                for w in weeks
            ),
            labels=labels,
            series=[
                (gettext("Median"), scaled([w.median_seconds for w in weeks])),
                (gettext("90th percentile"), scaled([w.p90_seconds for w in weeks])),
            ],
            x_label=week,
            y_label=unit,
        ),
        "outcomes": charts.bar_chart(
            ident="chart-outcomes",
            title=gettext("Cases opened per week, by outcome"),
            desc=", ".join(
                f"{_label(w)}: "
                + ", ".join(f"{k} {v}" for k, v in w.outcomes.items() if v)
                + (" none" if not w.opened else "")
                for w in weeks
            ),
            labels=labels,
            series=[
                (gettext("Answered"), [w.outcomes["answered"] for w in weeks]),
                (gettext("Still open"), [w.outcomes["open"] for w in weeks]),
                (gettext("Expired unanswered"), [w.outcomes["expired"] for w in weeks]),
                (
                    gettext("Dismissed"),
                    [
                        sum(v for k, v in w.outcomes.items() if k.startswith("dismissed:"))
                        for w in weeks
                    ],
                ),
            ],
            x_label=week,
            y_label=cases,
            stacked=True,
        ),
        "substances": charts.line_chart(
            ident="chart-substances",
            title=gettext("Cases per week naming the five most named substances"),
            desc="; ".join(
                f"{s}: " + ", ".join(str(w.substances.get(s, 0)) for w in weeks) for s in top
            )
            or gettext("No substance was named in this period."),
            labels=labels,
            series=[(s, [w.substances.get(s, 0) for w in weeks]) for s in top],
            x_label=week,
            y_label=cases,
        ),
    }


@router.get("/reports", include_in_schema=False)
async def reports_page(
    request: Request,
    user: Coordinator,
    start: From = "",
    end: To = "",
    channel: Channel = "",
    language: Language = "",
) -> HTMLResponse:
    """The figures for a period, per week: tables, charts, and a CSV link."""
    report, filters = await _report(request, start, end, channel, language)
    channels = [c for c in await runtime(request).store.list_channels() if c.kind != "direct"]
    return render(
        request,
        "reports.html",
        {
            "user": user,
            "report": report,
            "filters": filters,
            "channels": channels,
            "languages": LANGUAGES,
            "outcomes": OUTCOMES,
            "charts": _charts(report),
            "duration": duration,
            "csv_query": urlencode({k: v for k, v in filters.items() if v}),
        },
    )


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting like a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_rows(report: Report) -> list[list[object]]:
    """The report as long-format rows: scope, week start, week end, measure, item, value
    (one figure a row; a spreadsheet's pivot table makes any layout of it)."""
    rows: list[list[object]] = [["scope", "week_start", "week_end", "measure", "item", "value"]]
    for scope, figures in [("week", w) for w in report.weeks] + [("period", report.total)]:
        span = [scope, figures.start.isoformat(), figures.end.isoformat()]
        measures: list[tuple[str, str, object]] = [
            ("answers", "", figures.answers),
            ("first_answers", "", figures.first_answers),
            ("median_minutes_to_first_answer", "", minutes(figures.median_seconds)),
            ("p90_minutes_to_first_answer", "", minutes(figures.p90_seconds)),
            ("cases_opened", "", figures.opened),
            ("urgent_cases_opened", "", figures.urgent),
            *(("outcome", k, v) for k, v in figures.outcomes.items()),
            ("active_volunteers", "", figures.volunteers),
            *(("substance", k, v) for k, v in sorted(figures.substances.items())),
            *(("topic", k, v) for k, v in sorted(figures.topics.items())),
        ]
        for measure, item, value in measures:
            rows.append([*span, measure, item, "" if value is None else value])
    return [[_cell(c) for c in row] for row in rows]


@router.get("/reports.csv", include_in_schema=False)
async def reports_csv(
    request: Request,
    user: Coordinator,
    start: From = "",
    end: To = "",
    channel: Channel = "",
    language: Language = "",
) -> Response:
    report, filters = await _report(request, start, end, channel, language)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(report_rows(report))
    name = f"peerdesk-report-{filters['from']}-to-{filters['to']}"
    if channel:
        name += f"-channel-{report.channel_id}"
    if language:
        name += f"-{language}"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}.csv"'},
    )


def figures_json(figures: Figures) -> dict[str, Any]:
    return {
        "start": figures.start.isoformat(),
        "end": figures.end.isoformat(),
        "answers": figures.answers,
        "first_answers": figures.first_answers,
        "median_seconds_to_first_answer": figures.median_seconds,
        "p90_seconds_to_first_answer": figures.p90_seconds,
        "cases_opened": figures.opened,
        "urgent_cases_opened": figures.urgent,
        "outcomes": figures.outcomes,
        "active_volunteers": figures.volunteers,
        "substances": figures.substances,
        "topics": figures.topics,
    }


@router.get("/api/v1/reports", tags=["api"])
async def reports_api(
    request: Request,
    user: ApiCoordinator,
    start: From = "",
    end: To = "",
    channel: Channel = "",
    language: Language = "",
) -> dict[str, Any]:
    """The Reports page's figures (coordinators): per week and for the whole period."""
    report, filters = await _report(request, start, end, channel, language)
    return {
        "from": filters["from"],
        "to": filters["to"],
        "channel": report.channel_id,
        "language": report.language,
        "archived_cases": report.archived_cases,
        "weeks": [figures_json(w) for w in report.weeks],
        "total": figures_json(report.total),
    }


def _signal_charts(found: Signals) -> list[Markup]:
    labels = [dates.week_label(w.date(), language=i18n.current()) for w in found.weeks]
    return [
        charts.bar_chart(
            ident=f"chart-signal-{i}",
            title=gettext("Cases per week naming %(name)s", name=s.name),
            desc=", ".join(f"{label}: {n}" for label, n in zip(labels, s.weekly, strict=True)),
            labels=labels,
            series=[(gettext("Cases"), list(s.weekly))],
            x_label=gettext("Week starting"),
            y_label=gettext("Cases"),
        )
        for i, s in enumerate(found.signals)
    ]


@router.get("/signals", include_in_schema=False)
async def signals_page(request: Request, user: Expert) -> HTMLResponse:
    """Substances and topics whose mentions rose sharply, across channels (anonymous)."""
    found = await find_signals(runtime(request).store)
    entries = {e.id: e for e in await runtime(request).store.faq_entries()}
    return render(
        request,
        "signals.html",
        {
            "user": user,
            "found": found,
            "rule": found.rule,
            "charts": _signal_charts(found),
            "entries": entries,
            "recent_start": _day(found.weeks[found.rule.baseline_weeks]),
            "baseline_start": _day(found.weeks[0]),
        },
    )


def _day(moment: datetime) -> str:
    return moment.date().isoformat()

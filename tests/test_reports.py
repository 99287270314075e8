"""Reports: the weekly figures from real cases, replies, dismissals and the retention
archive, on SQLite and PostgreSQL; the page (tables, SVG charts), the CSV (and formula
injection) and the JSON, for coordinators only."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
import sqlalchemy as sa

from bot import schema as t
from bot.models import DismissReason, Role, User, Visibility, utcnow
from bot.reports import build_report, default_period, median, percentile, week_start
from bot.runtime import Runtime
from tests.conftest import add_user, login
from tests.fakes import channel, message, opt_in

MIN = 60.0


def test_percentile_is_nearest_rank_and_median_the_usual_one() -> None:
    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([10.0, 20.0, 60.0], 90) == 60.0
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile(list(range(1, 11)), 50) == 5
    assert median([10.0, 20.0, 60.0]) == 20.0
    assert median([30.0, 120.0]) == 75.0
    assert median([]) is None


def test_the_default_period_is_four_weeks_from_a_monday() -> None:
    start, end = default_period(date(2026, 11, 26))  # a Thursday
    assert (start, end) == (date(2026, 11, 2), date(2026, 11, 26))
    assert start.weekday() == 0 and week_start(end) - start == timedelta(weeks=3)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


async def _case(rt: Runtime, text: str, at: datetime, *, chat: str = "chat-1") -> int:
    ref = channel(chat)
    await rt.pipeline.opt_in(opt_in(ref))
    key = f"{at.isoformat()}-{text}"
    result = await rt.pipeline.ingest(message(text, f"m-{key}", chat=ref, author=f"a-{key}"))
    assert result is not None and result.case_id is not None
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.cases.update().where(t.cases.c.id == result.case_id).values(created_at=at)
        )
    return result.case_id


async def _answer(
    rt: Runtime, case_id: int, by: User, at: datetime, *, entry: str | None = None
) -> int:
    """An approved reply, as if approved at ``at`` (the row and its audit event)."""
    reply = await rt.store.approve_reply(
        case_id,
        text="Take care.",
        visibility=Visibility.PUBLIC,
        written_by=by.id,
        approved_by=by.id,
        entry_id=entry,
    )
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.replies.update().where(t.replies.c.id == reply.id).values(approved_at=at)
        )
        await conn.execute(
            t.audit_events.update()
            .where(
                t.audit_events.c.action == "reply.approve",
                t.audit_events.c.object_id == str(reply.id),
            )
            .values(at=at)
        )
    return reply.id


async def _last_activity(rt: Runtime, case_id: int, at: datetime) -> None:
    async with rt.store.engine.begin() as conn:
        await conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(updated_at=at))


@dataclass
class World:
    start: date
    end: date
    week0: date
    week1: date
    chat2_case: int


async def _world(rt: Runtime) -> World:
    """Week 0: three answered cases (10, 20, 60 minutes; one answered twice), one
    dismissed as spam, one open; all in chat-1, by vera. Week 1: one English case in
    chat-2 answered by wim after 2 hours, and two cases purged by retention: one answered
    by vera after 30 minutes, one that expired unanswered."""
    vera = await add_user(rt, "vera")
    wim = await add_user(rt, "wim")
    start, end = default_period(utcnow().date())
    week0, week1 = start, start + timedelta(weeks=1)
    xtc = "is xtc met alcohol gevaarlijk?"
    for n, delay in enumerate((10, 20, 60)):
        opened = _at(week0, 9 + n)
        case_id = await _case(rt, xtc, opened)
        await _answer(
            rt, case_id, vera, opened + timedelta(minutes=delay), entry="combo_mdma_alcohol"
        )
        if n == 0:
            await _answer(rt, case_id, vera, opened + timedelta(hours=5))
    spam = await _case(rt, "hoeveel ml G mag ik?", _at(week0, 14))
    await rt.store.dismiss_case(spam, vera.id, DismissReason.SPAM)
    await _case(rt, "coke en speed samen?", _at(week0 + timedelta(days=1), 10))

    english = await _case(
        rt, "is it safe to mix ketamine and alcohol?", _at(week1, 8), chat="chat-2"
    )
    await _answer(rt, english, wim, _at(week1, 10), entry="combo_ketamine_alcohol")
    purged = await _case(rt, xtc, _at(week1, 12))
    await _answer(rt, purged, vera, _at(week1, 12, 30))
    expired = await _case(rt, "hoeveel ml G mag ik?", _at(week1, 13))
    old = _at(week1, 23)
    await _last_activity(rt, purged, old)
    await _last_activity(rt, expired, old)
    counts = await rt.store.purge(
        unanswered_before=old + timedelta(seconds=1), answered_before=old + timedelta(seconds=1)
    )
    assert counts["cases"] == 2
    return World(start=start, end=end, week0=week0, week1=week1, chat2_case=english)


async def test_weekly_figures_from_live_and_archived_cases(runtime: Runtime) -> None:
    rt = runtime
    world = await _world(rt)
    report = await build_report(rt.store, world.start, world.end)
    assert [w.start for w in report.weeks] == [world.start + timedelta(weeks=i) for i in range(4)]
    assert report.weeks[-1].end == world.end
    first, second = report.weeks[0], report.weeks[1]

    assert (first.answers, first.first_answers) == (4, 3)
    assert (first.median_seconds, first.p90_seconds) == (20 * MIN, 60 * MIN)
    assert first.opened == 5 and first.urgent == 0
    assert {k: v for k, v in first.outcomes.items() if v} == {
        "answered": 3,
        "dismissed:spam": 1,
        "open": 1,
    }
    assert first.volunteers == 1
    assert first.topics == {"combo_mdma_alcohol": 3}
    assert first.substances == {
        "mdma": 3,
        "alcohol": 3,
        "ghb": 1,
        "cocaine": 1,
        "amphetamine": 1,
    }

    assert (second.answers, second.first_answers) == (2, 2)
    assert (second.median_seconds, second.p90_seconds) == (75 * MIN, 120 * MIN)
    assert {k: v for k, v in second.outcomes.items() if v} == {"answered": 2, "expired": 1}
    assert second.volunteers == 2
    # The purged case's topics are not known to have been used: only the live one counts.
    assert second.topics == {"combo_ketamine_alcohol": 1}
    assert second.substances == {"ketamine": 1, "alcohol": 2, "mdma": 1, "ghb": 1}

    total = report.total
    assert (total.answers, total.first_answers, total.opened) == (6, 5, 8)
    # Delays 10, 20, 30, 60, 120 minutes.
    assert (total.median_seconds, total.p90_seconds) == (30 * MIN, 120 * MIN)
    assert total.volunteers == 2
    assert report.archived_cases == 2
    assert report.substances[:2] == ["alcohol", "mdma"]


async def test_reports_narrow_to_a_channel_and_a_language(runtime: Runtime) -> None:
    rt = runtime
    world = await _world(rt)
    chat2 = await rt.store.get_channel("fake", "chat-2")
    assert chat2 is not None
    for report in (
        await build_report(rt.store, world.start, world.end, channel_id=chat2.id),
        await build_report(rt.store, world.start, world.end, language="en"),
    ):
        total = report.total
        assert (total.answers, total.opened, total.volunteers) == (1, 1, 1)
        assert total.median_seconds == 120 * MIN
        assert report.weeks[0].opened == 0
    chat1 = await rt.store.get_channel("fake", "chat-1")
    assert chat1 is not None
    report = await build_report(rt.store, world.start, world.end, channel_id=chat1.id)
    # The archive keeps the channel: the purged cases count in their channel.
    assert (report.total.opened, report.total.answers, report.archived_cases) == (7, 5, 2)
    assert report.total.volunteers == 1


async def test_a_period_is_checked(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="ends before"):
        await build_report(runtime.store, date(2026, 2, 1), date(2026, 1, 1))
    with pytest.raises(ValueError, match="at most"):
        await build_report(runtime.store, date(2020, 1, 1), date(2026, 1, 1))
    empty = await build_report(runtime.store, date(2026, 1, 7), date(2026, 1, 20))
    # A Wednesday start: the first week is short, the others run Monday to Sunday.
    assert [(w.start, w.end) for w in empty.weeks] == [
        (date(2026, 1, 7), date(2026, 1, 11)),
        (date(2026, 1, 12), date(2026, 1, 18)),
        (date(2026, 1, 19), date(2026, 1, 20)),
    ]
    assert empty.total.median_seconds is None and empty.total.answers == 0


SVG_RE = re.compile(r"<svg\b.*?</svg>", re.S)


async def test_the_page_shows_tables_and_accessible_charts(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    world = await _world(rt)
    await add_user(rt, "cora", Role.COORDINATOR)
    await login(client, "cora")
    page = await client.get("/reports")
    assert page.status_code == 200
    assert 'href="/reports"' in page.text  # the nav link
    assert f'value="{world.start.isoformat()}"' in page.text
    week0 = re.search(
        rf"<tr>\s*<th scope=\"row\">{world.week0} – [^<]+</th>(.*?)</tr>", page.text, re.S
    )
    assert week0 is not None
    cells = re.findall(r"<td>([^<]*)</td>", week0.group(1))
    # answers, first answers, median, p90, opened, urgent, answered, open, expired, the
    # four dismissal reasons, volunteers
    assert cells == ["4", "3", "20 min", "1 hr", "5", "0", "3", "1", "0", "0", "0", "1", "0", "1"]
    assert "2 of these cases were purged by retention" in page.text
    svgs = SVG_RE.findall(page.text)
    assert len(svgs) == 4
    for svg in svgs:
        root = ET.fromstring(svg)
        title = root.find("{http://www.w3.org/2000/svg}title")
        assert title is not None and title.text
        assert root.get("aria-labelledby") == f"{title.get('id')} {root[1].get('id')}"
    assert "Answers given per week" in svgs[0]
    assert 'style="' not in page.text and "<script>" not in page.text


async def test_the_csv_has_every_figure_and_no_formula(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    world = await _world(rt)
    cora = await add_user(rt, "cora", Role.COORDINATOR)
    # An FAQ entry id sent through the API is free text: a formula must stay text.
    case_id = await _case(rt, "is xtc met alcohol gevaarlijk?", _at(world.week1, 15))
    await _answer(rt, case_id, cora, _at(world.week1, 16), entry='=HYPERLINK("http://x")')
    await login(client, "cora")
    params = {"from": world.start.isoformat(), "to": world.end.isoformat()}
    response = await client.get("/reports.csv", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="peerdesk-report-{world.start}-to-{world.end}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["scope", "week_start", "week_end", "measure", "item", "value"]
    figures = {(r[0], r[1], r[3], r[4]): r[5] for r in rows[1:]}
    week0 = world.week0.isoformat()
    assert figures[("week", week0, "answers", "")] == "4"
    assert figures[("week", week0, "median_minutes_to_first_answer", "")] == "20.0"
    assert figures[("week", week0, "p90_minutes_to_first_answer", "")] == "60.0"
    assert figures[("week", week0, "outcome", "dismissed:spam")] == "1"
    assert figures[("week", week0, "substance", "mdma")] == "3"
    assert figures[("period", world.start.isoformat(), "active_volunteers", "")] == "3"
    week1 = world.week1.isoformat()
    assert figures[("week", week1, "topic", '\'=HYPERLINK("http://x")')] == "1"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert (
        (await client.get("/reports.csv", params={"language": "en"}))
        .headers["content-disposition"]
        .endswith('-en.csv"')
    )


async def test_the_json_and_wrong_parameters(runtime: Runtime, client: httpx.AsyncClient) -> None:
    rt = runtime
    world = await _world(rt)
    await add_user(rt, "cora", Role.COORDINATOR)
    await login(client, "cora")
    body = (
        await client.get("/api/v1/reports", params={"from": str(world.start), "to": str(world.end)})
    ).json()
    assert body["weeks"][1]["median_seconds_to_first_answer"] == 75 * MIN
    assert body["total"]["answers"] == 6 and body["archived_cases"] == 2
    for params, name in [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"channel": "abc"}, "channel"),
        ({"language": "de"}, "language"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "period"),
    ]:
        for url in ("/reports", "/reports.csv", "/api/v1/reports"):
            response = await client.get(url, params=params)
            assert response.status_code == 422, (url, params)
            if url.startswith("/api"):
                assert response.json()["detail"].startswith(name)


async def test_only_coordinators_read_reports(runtime: Runtime, client: httpx.AsyncClient) -> None:
    rt = runtime
    await add_user(rt, "exa", Role.EXPERT)
    await login(client, "exa")
    for url in ("/reports", "/reports.csv", "/api/v1/reports"):
        assert (await client.get(url)).status_code == 403
    assert 'href="/reports"' not in (await client.get("/queue")).text
    assert 'href="/signals"' in (await client.get("/queue")).text


async def test_a_report_over_an_empty_store_is_empty(runtime: Runtime) -> None:
    start, end = default_period(utcnow().date())
    report = await build_report(runtime.store, start, end)
    assert report.total.opened == 0 and report.substances == [] and report.topics == []
    async with runtime.store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.case_archive)) == 0

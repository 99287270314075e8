"""Retention: cases and messages past the settings' days are deleted, an anonymous
archive keeps the figures, and nothing of the purged text stays anywhere."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bot import schema as t
from bot.cli import main
from bot.models import CaseStatus, DismissReason, Visibility, utcnow
from bot.retention import purge
from bot.runtime import Runtime
from tests.conftest import add_user, flagged_case
from tests.fakes import message, opt_in

DAY = timedelta(days=1)


async def _age(rt: Runtime, case_id: int, days: int) -> None:
    """Make a case (and its messages) look ``days`` old."""
    then = utcnow() - days * DAY
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.cases.update().where(t.cases.c.id == case_id).values(updated_at=then, created_at=then)
        )
        await conn.execute(
            t.messages.update()
            .where(t.messages.c.case_id == case_id)
            .values(received_at=then, sent_at=then)
        )


async def _case(rt: Runtime, text: str, author: str) -> int:
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message(text, f"m-{author}", author=author))
    assert result is not None and result.case_id is not None
    return result.case_id


async def _every_text(rt: Runtime) -> str:
    """Every value of every row of every table, as one string."""
    parts = []
    async with rt.store.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


async def test_purge_keeps_what_is_recent_and_archives_what_goes(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    old_answered = await _case(rt, "is xtc met alcohol gevaarlijk? oud antwoord", "a1")
    await rt.store.approve_reply(
        old_answered,
        text="Liever niet samen, OUDANTWOORD.",
        visibility=Visibility.PUBLIC,
        written_by=vera.id,
        approved_by=vera.id,
    )
    recent_answered = await _case(rt, "hoeveel mdma is te veel? recent", "a2")
    await rt.store.approve_reply(
        recent_answered,
        text="Begin laag.",
        visibility=Visibility.PUBLIC,
        written_by=vera.id,
        approved_by=vera.id,
    )
    stale_open = await _case(rt, "wie heeft keta voor zaterdag OUDEVRAAG", "a3")
    dismissed = await _case(rt, "coke smokkel in de haven, hoeveel kost dat", "a4")
    await rt.store.dismiss_case(dismissed, vera.id, DismissReason.NOT_DRUG_RELATED)
    await rt.pipeline.ingest(message("gewoon gebabbel OUDGEBABBEL", "loose-old", author="a5"))
    await rt.pipeline.ingest(message("gewoon gebabbel van vandaag", "loose-new", author="a6"))
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.messages.update()
            .where(t.messages.c.platform_message_id == "loose-old")
            .values(received_at=utcnow() - 40 * DAY)
        )
    await _age(rt, old_answered, 200)
    await _age(rt, recent_answered, 100)
    await _age(rt, stale_open, 40)
    await _age(rt, dismissed, 10)
    authors = {(await rt.store.get_case(c)).case.author for c in (old_answered, stale_open)}

    counts = await purge(rt.store, rt.settings)

    assert counts == {"cases": 2, "messages": 3}
    left = {c.id for c in await rt.store.list_cases(statuses=list(CaseStatus))}
    assert left == {recent_answered, dismissed}
    text = await _every_text(rt)
    for gone in ("OUDANTWOORD", "OUDEVRAAG", "OUDGEBABBEL", "oud antwoord"):
        assert gone not in text
    assert "gewoon gebabbel van vandaag" in text

    archive = {row["case_id"]: row for row in await rt.store.archived_cases()}
    assert set(archive) == {old_answered, stale_open}
    answered = archive[old_answered]
    assert answered["status"] == "answered" and answered["replies"] == 1
    assert answered["first_reply_at"] is not None
    assert set(answered["substances"]) >= {"mdma", "alcohol"}
    assert "combo_mdma_alcohol" in answered["topics"]
    assert archive[stale_open]["status"] == "open" and archive[stale_open]["replies"] == 0
    # The archive knows no one: no pseudonym, no text.
    assert not any(a in str(archive) for a in authors)

    # Nothing more is due: a second run purges nothing.
    assert await purge(rt.store, rt.settings) == {"cases": 0, "messages": 0}


async def test_retention_days_are_settings(runtime: Runtime) -> None:
    rt = runtime
    case_id = await flagged_case(rt, "hoeveel mdma is te veel?")
    await _age(rt, case_id, 5)
    kept = await purge(rt.store, rt.settings)
    assert kept["cases"] == 0
    shorter = replace(
        rt.settings, privacy=replace(rt.settings.privacy, retention_unanswered_days=3)
    )
    assert (await purge(rt.store, shorter))["cases"] == 1


def test_the_purge_command(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "p.db"}"\n'
        "[privacy]\nretention_unanswered_days = 7\n",
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["init", "--config", str(config)], stdout=out, stderr=err) == 0
    out = io.StringIO()
    assert main(["purge", "--config", str(config)], stdout=out, stderr=err) == 0, err.getvalue()
    assert "purged 0 cases and 0 messages older than 180 days (answered) or 7 days" in (
        out.getvalue()
    )


async def test_a_running_peerdesk_purges_hourly(runtime: Runtime) -> None:
    rt = runtime
    case_id = await _case(rt, "hoeveel mdma is te veel?", "h1")
    await _age(rt, case_id, 40)
    await rt.maintain()
    assert rt.last_purge is not None
    assert [c.id for c in await rt.store.list_cases()] == []
    again = await _case(rt, "hoeveel ketamine is te veel?", "h2")
    await _age(rt, again, 40)
    await rt.maintain()  # within the hour: not yet
    assert [c.id for c in await rt.store.list_cases()] == [again]
    rt.last_purge = utcnow() - timedelta(hours=1, minutes=1)
    await rt.maintain()
    assert await rt.store.list_cases() == []

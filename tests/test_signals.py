"""Signals: substances and topics whose mentions rose by the rule, from live and archived
cases, across enough channels; the page shows counts only."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import httpx

from bot import schema as t
from bot.models import Role, utcnow
from bot.runtime import Runtime
from bot.signals import Rule, find_signals
from tests.conftest import add_user, login
from tests.fakes import channel, message, opt_in

KETAMINE = "is it safe to mix ketamine and alcohol?"  # ketamine, alcohol
XTC = "is xtc met alcohol gevaarlijk?"  # mdma, alcohol
GHB = "hoeveel ml G mag ik?"  # ghb
MMC = "3mmc snuiven, hoe lang blijf je wakker?"  # cocaine, cathinones


async def _case(rt: Runtime, text: str, at: datetime, chat: str) -> int:
    ref = channel(chat)
    await rt.pipeline.opt_in(opt_in(ref))
    key = uuid.uuid4().hex
    result = await rt.pipeline.ingest(message(text, key, chat=ref, author=key))
    assert result is not None and result.case_id is not None
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.cases.update()
            .where(t.cases.c.id == result.case_id)
            .values(created_at=at, updated_at=at)
        )
    return result.case_id


async def _world(rt: Runtime, now: datetime) -> None:
    """Recent (last 14 days): 6 ketamine cases in 3 channels, 5 GHB cases in one channel,
    4 3-MMC cases in 4 channels. Baseline (the 8 weeks before): 4 ketamine cases (2 of
    them since purged by retention) and 12 xtc cases."""
    for i in range(6):
        await _case(rt, KETAMINE, now - timedelta(days=1 + 2 * i), f"chat-{i % 3}")
    for i in range(5):
        await _case(rt, GHB, now - timedelta(days=2 + i), "chat-0")
    for i in range(4):
        await _case(rt, MMC, now - timedelta(days=3 + i), f"chat-{i}")
    purged = []
    for i in range(4):
        case_id = await _case(rt, KETAMINE, now - timedelta(days=20 + 7 * i), "chat-1")
        if i >= 2:
            purged.append(case_id)
    for i in range(12):
        await _case(rt, XTC, now - timedelta(days=15 + 3 * i), f"chat-{i % 4}")
    # Retention purges the two oldest ketamine cases (open, so "unanswered").
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.cases.update()
            .where(t.cases.c.id.in_(purged))
            .values(updated_at=now - timedelta(days=400))
        )
    counts = await rt.store.purge(
        unanswered_before=now - timedelta(days=300), answered_before=now - timedelta(days=300)
    )
    assert counts["cases"] == 2


async def test_signals_follow_the_rule(runtime: Runtime) -> None:
    now = utcnow()
    await _world(runtime, now)
    found = await find_signals(runtime.store, now=now)
    assert [(s.kind, s.name) for s in found.signals] == [
        ("topic", "combo_ketamine_alcohol"),
        ("substance", "ketamine"),
    ]
    ketamine = found.signals[1]
    assert (ketamine.recent, ketamine.baseline, ketamine.channels) == (6, 4, 3)
    assert (ketamine.recent_rate, ketamine.baseline_rate, ketamine.ratio) == (3.0, 0.5, 6.0)
    assert len(ketamine.weekly) == 10 and sum(ketamine.weekly[8:]) == 6
    assert sum(ketamine.weekly[:8]) == 4  # the purged ones come from the archive
    # Alcohol: 6 recent (3 a week) against 16 in the baseline (2 a week): 1.5 times, no.
    # 3-MMC: 4 recent cases, under the minimum of 5. GHB and its FAQ topic rose, but in
    # one channel only: counted, not named.
    assert found.narrow == 2
    assert len(found.weeks) == 10 and found.weeks[-1] == now - timedelta(weeks=1)

    wider = await find_signals(runtime.store, now=now, rule=Rule(min_channels=1))
    ghb = next(s for s in wider.signals if s.name == "ghb")
    assert (ghb.recent, ghb.baseline, ghb.ratio) == (5, 0, None)  # new
    assert wider.narrow == 0
    assert wider.signals[0].ratio is None  # new ones first
    lower = await find_signals(runtime.store, now=now, rule=Rule(min_count=4))
    assert "cathinones" in {s.name for s in lower.signals}


async def test_no_signal_in_an_empty_store(runtime: Runtime) -> None:
    found = await find_signals(runtime.store)
    assert found.signals == () and found.narrow == 0


async def test_the_page_shows_counts_only_to_experts_and_coordinators(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    await _world(rt, utcnow())
    await add_user(rt, "exa", Role.EXPERT)
    await add_user(rt, "vol", Role.VOLUNTEER)
    await login(client, "vol")
    assert (await client.get("/signals")).status_code == 403
    assert 'href="/signals"' not in (await client.get("/queue")).text
    await login(client, "exa")
    page = await client.get("/signals")
    assert page.status_code == 200
    rows = re.findall(
        r"<tr>\s*<td>(\w+)</td>\s*<th scope=\"row\">(.*?)</th>(.*?)</tr>", page.text, re.S
    )
    assert [(kind, re.sub(r"<[^>]+>", "", name)) for kind, name, _ in rows] == [
        ("topic", "combo_ketamine_alcohol"),
        ("substance", "ketamine"),
    ]
    cells = re.findall(r"<td>([^<]*)</td>", rows[1][2])
    assert cells == ["6", "3.0", "0.5", "× 6.0", "3"]
    assert "2 other rises came from fewer than 3 channels" in page.text
    assert "at least 5 recent mentions" in page.text
    # Anonymous: no message text, no channel name, no author.
    for secret in ("ketamine and alcohol?", "Group chat-", "Name "):
        assert secret not in page.text
    svgs = re.findall(r"<svg\b.*?</svg>", page.text, re.S)
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.findtext("{http://www.w3.org/2000/svg}title", "").startswith("Cases per week")


async def test_the_page_says_when_there_is_no_signal(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "cora", Role.COORDINATOR)
    await login(client, "cora")
    page = await client.get("/signals")
    assert page.status_code == 200 and 'id="no-signals"' in page.text

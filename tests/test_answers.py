"""The answers history: search by words, topic, substance, language, approver, period;
"use this answer" starts the reply from an earlier one."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import httpx

from bot import schema as t
from bot.models import Visibility, utcnow
from bot.runtime import Runtime
from tests.conftest import add_user, login
from tests.fakes import message, opt_in


async def _answered(
    rt: Runtime, text: str, reply: str, author: str, by: int, entry: str | None = None
) -> int:
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message(text, f"m-{author}", author=author))
    assert result is not None and result.case_id is not None
    await rt.store.approve_reply(
        result.case_id,
        text=reply,
        visibility=Visibility.PUBLIC,
        written_by=by,
        approved_by=by,
        entry_id=entry,
    )
    return result.case_id


async def test_past_answers_are_found_by_each_filter(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    wim = await add_user(rt, "wim")
    mdma = await _answered(
        rt,
        "is xtc met alcohol gevaarlijk?",
        "Liever niet: 100% uitdroging_risico.",
        "a1",
        vera.id,
        "combo_mdma_alcohol",
    )
    ghb = await _answered(rt, "hoeveel ml G mag ik?", "Meet af met een spuitje.", "a2", wim.id)
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.replies.update()
            .where(t.replies.c.case_id == ghb)
            .values(approved_at=utcnow() - timedelta(days=10))
        )
    store = rt.store
    assert [a.case_id for a in await store.past_answers()] == [mdma, ghb]
    assert [a.case_id for a in await store.past_answers(text="LIEVER uitdroging")] == [mdma]
    assert [a.case_id for a in await store.past_answers(text="100%")] == [mdma]
    assert await store.past_answers(text="100_") == []  # LIKE wildcards are literal
    assert [a.case_id for a in await store.past_answers(entry_id="combo_mdma_alcohol")] == [mdma]
    assert [a.case_id for a in await store.past_answers(substance="ghb")] == [ghb]
    assert [a.case_id for a in await store.past_answers(volunteer="wim")] == [ghb]
    assert [a.case_id for a in await store.past_answers(language="nl")] == [mdma, ghb]
    assert [a.case_id for a in await store.past_answers(since=utcnow() - timedelta(days=2))] == [
        mdma
    ]
    assert [a.case_id for a in await store.past_answers(until=utcnow() - timedelta(days=2))] == [
        ghb
    ]


async def test_use_an_earlier_answer_in_the_current_reply(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    await _answered(rt, "is xtc met alcohol gevaarlijk?", "Liever <niet> samen.", "a1", vera.id)
    await rt.pipeline.opt_in(opt_in())
    new = await rt.pipeline.ingest(message("xtc en bier, kan dat?", "m-new", author="a9"))
    assert new is not None and new.case_id is not None
    await login(client, "vera")
    case_page = (await client.get(f"/cases/{new.case_id}")).text
    assert f"/answers?for_case={new.case_id}" in case_page
    found = await client.get("/answers", params={"q": "samen", "for_case": new.case_id})
    assert found.status_code == 200 and "Liever &lt;niet&gt; samen." in found.text
    use = re.search(r'href="(/cases/\d+\?reply_from=\d+)#reply"', found.text)
    assert use is not None
    page = await client.get(html.unescape(use.group(1)))
    box = re.search(r'<textarea id="reply-text"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert box is not None and html.unescape(box.group(1)).strip() == "Liever <niet> samen."
    assert (await client.get("/answers", params={"since": "not a date"})).status_code == 422
    assert "No answer matches." in (await client.get("/answers", params={"q": "zzz"})).text

"""The audit log page: who did what, newest first, FAQ revisions among the events,
filters by kind, object and person, paging; pseudonyms stay pseudonyms; coordinators
only."""

from __future__ import annotations

import dataclasses
import html
import re
import uuid

import httpx

from bot.audit_log import audit_filters, audit_log
from bot.models import DismissReason, Role, Visibility, utcnow
from bot.runtime import Runtime
from tests.conftest import add_user, login
from tests.fakes import message, opt_in


async def _case(rt: Runtime) -> int:
    await rt.pipeline.opt_in(opt_in())
    key = uuid.uuid4().hex
    result = await rt.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", key, author=key))
    assert result is not None and result.case_id is not None
    return result.case_id


async def _world(rt: Runtime) -> dict[str, int]:
    vera = await add_user(rt, "vera")
    exa = await add_user(rt, "exa", Role.EXPERT)
    answered = await _case(rt)
    reply = await rt.store.approve_reply(
        answered,
        text="Take care.",
        visibility=Visibility.PUBLIC,
        written_by=vera.id,
        approved_by=vera.id,
    )
    dismissed = await _case(rt)
    await rt.store.dismiss_case(dismissed, vera.id, DismissReason.SPAM)
    entry, revision = await rt.store.faq_entry("combo_mdma_alcohol")
    changed = dataclasses.replace(entry, status="draft")
    await rt.store.save_faq_entry(changed, author="exa", expected_revision=revision)
    return {"answered": answered, "reply": reply.id, "dismissed": dismissed, "exa": exa.id}


async def test_the_log_merges_events_and_faq_revisions_newest_first(runtime: Runtime) -> None:
    rt = runtime
    ids = await _world(rt)
    page = await audit_log(rt.store)
    actions = [(e.actor, e.action) for e in page.entries]
    assert actions[:3] == [
        ("exa", "faq.revision"),
        ("vera", "case.dismiss"),
        ("vera", "reply.approve"),
    ]
    assert [e.at for e in page.entries] == sorted((e.at for e in page.entries), reverse=True)
    revision = page.entries[0]
    assert (revision.object_type, revision.object_id) == ("faq_entry", "combo_mdma_alcohol")
    assert revision.details["status"] == "draft"
    approve = page.entries[2]
    assert approve.details["case"] == ids["answered"] and approve.object_id == str(ids["reply"])
    # The opt-in was made by a chat admin: the system acted, the admin is a pseudonym.
    opt_ins = [e for e in page.entries if e.action == "channel.opt_in"]
    assert opt_ins and all(e.actor == "system" for e in opt_ins)
    assert all(e.details["by"] != "admin-1" and len(e.details["by"]) > 20 for e in opt_ins)

    assert [e.action for e in (await audit_log(rt.store, kind="case")).entries] == ["case.dismiss"]
    assert {e.action for e in (await audit_log(rt.store, kind="faq")).entries} == {"faq.revision"}
    by_vera = await audit_log(rt.store, actor="vera")
    assert [e.action for e in by_vera.entries] == ["case.dismiss", "reply.approve"]
    by_exa = await audit_log(rt.store, actor="exa")
    assert [e.action for e in by_exa.entries] == ["faq.revision"]
    system = await audit_log(rt.store, actor="system")
    assert system.entries and all(e.actor == "system" for e in system.entries)
    assert "faq.revision" not in {e.action for e in system.entries}
    channels = await audit_log(rt.store, object_type="channel")
    assert {e.action for e in channels.entries} == {"channel.opt_in"}
    assert (await audit_log(rt.store, kind="re%")).entries == ()  # LIKE wildcards are text
    kinds, types = await audit_filters(rt.store)
    assert {"case", "channel", "faq", "reply", "user"} <= set(kinds)
    assert {"case", "channel", "faq_entry", "reply"} <= set(types)


async def test_paging(runtime: Runtime) -> None:
    rt = runtime
    await _world(rt)
    everything = (await audit_log(rt.store, per_page=1000)).entries
    first = await audit_log(rt.store, per_page=2)
    second = await audit_log(rt.store, per_page=2, page=2)
    assert first.has_next and second.page == 2
    assert first.entries + second.entries == everything[:4]
    last = (len(everything) + 1) // 2
    end = await audit_log(rt.store, per_page=2, page=last)
    assert not end.has_next and end.entries[-1] == everything[-1]


async def test_the_page_for_coordinators(runtime: Runtime, client: httpx.AsyncClient) -> None:
    rt = runtime
    ids = await _world(rt)
    cora = await add_user(rt, "cora", Role.COORDINATOR)
    # Enough claims and releases for a second page.
    case_id = await _case(rt)
    for _ in range(26):
        await rt.store.claim_case(case_id, cora.id, lapsed_before=utcnow(), max_claims=3)
        await rt.store.release_case(case_id, cora.id)
    await login(client, "vera")
    assert (await client.get("/audit")).status_code == 403
    await login(client, "exa")
    assert (await client.get("/audit")).status_code == 403
    await login(client, "cora")
    page = await client.get("/audit")
    assert page.status_code == 200
    assert 'href="/audit"' in page.text
    rows = re.findall(r"<tr class=\"audit-(\w+)\">(.*?)</tr>", page.text, re.S)
    assert len(rows) == 50
    assert 'rel="next" href="/audit?page=2"' in page.text and 'rel="prev"' not in page.text
    older = await client.get("/audit", params={"page": 2})
    assert 'rel="prev" href="/audit?page=1"' in older.text
    text = html.unescape(older.text)
    assert "reply.approve" in text and f"case #{ids['answered']}" in text
    assert "written_by: vera" in text  # an account id shown as its name
    filtered = await client.get("/audit", params={"kind": "faq", "actor": "exa"})
    rows = re.findall(r"<tr class=\"audit-(\w+)\">(.*?)</tr>", filtered.text, re.S)
    assert [kind for kind, _ in rows] == ["faq"]
    assert 'href="/faq/combo_mdma_alcohol"' in rows[0][1]
    assert "status: draft" in rows[0][1]
    opt_in_page = html.unescape((await client.get("/audit", params={"kind": "channel"})).text)
    # The admin's pseudonym is shortened, never resolved to who they are.
    assert re.search(r"by: [0-9a-f]{12}…", opt_in_page) and "admin-1" not in opt_in_page
    assert (await client.get("/audit", params={"page": 0})).status_code == 422
    empty = await client.get("/audit", params={"actor": "nobody"})
    assert "Nothing recorded matches." in empty.text

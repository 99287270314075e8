"""Channels (coordinators): the consent record on the page, pausing (nothing is read while
paused, nor what was said during the pause), a channel's language and its own shorter
retention, which the purge honours; in-process HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from bot import channel_admin
from bot import schema as t
from bot.models import ChannelRef, MessageEdit, OptIn, Role, Visibility, utcnow
from bot.retention import purge
from bot.runtime import Runtime
from tests.conftest import add_user, login
from tests.fakes import channel, message, opt_in

DAY = timedelta(days=1)


async def _coordinator(rt: Runtime, client: httpx.AsyncClient) -> tuple[int, str]:
    cora = await add_user(rt, "cora", Role.COORDINATOR)
    return cora.id, await login(client, "cora")


async def _channel_id(rt: Runtime, chat_id: str = "chat-1") -> int:
    found = await rt.store.get_channel("fake", chat_id)
    assert found is not None
    return found.id


async def _stored(rt: Runtime) -> list[str]:
    async with rt.store.engine.connect() as conn:
        return list((await conn.scalars(sa.select(t.messages.c.text))).all())


def _item(page: str, channel_id: int) -> str:
    found = re.search(
        rf'<li class="channel [^"]*" data-channel-id="{channel_id}">.*?</li>', page, re.S
    )
    assert found is not None, page
    return found.group(0)


async def test_only_coordinators_see_channels(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await runtime.pipeline.opt_in(opt_in())
    channel_id = await _channel_id(runtime)
    assert (await client.get("/channels")).headers["location"] == "/login"
    await add_user(runtime, "ed", Role.EXPERT)
    csrf = await login(client, "ed")
    assert (await client.get("/channels")).status_code == 403
    paused = await client.post(
        f"/channels/{channel_id}/watch", data={"paused": "1", "csrf_token": csrf}
    )
    assert paused.status_code == 403
    assert (await client.get("/api/v1/channels")).status_code == 403
    assert not (await channel_admin.channel(runtime.store, channel_id)).paused_at


async def test_the_page_shows_channels_with_their_consent_record(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await runtime.pipeline.opt_in(opt_in(channel("chat-1", language="nl")))
    await runtime.pipeline.opt_in(opt_in(channel("chat-2", language=None)))
    await runtime.pipeline.ingest(
        message("hoi", "d1", chat=ChannelRef("fake", "dm-1", "DM Someone", kind="direct"))
    )
    first = await channel_admin.channel(runtime.store, await _channel_id(runtime))
    await _coordinator(runtime, client)
    page = await client.get("/channels")
    assert page.status_code == 200
    item = _item(page.text, first.id)
    assert "Group chat-1" in item and "fake" in item and ">nl<" in item
    assert first.consent_by is not None and first.consent_by[:12] in item
    assert "admin-1" not in page.text  # the admin's platform id is never shown
    assert first.consent_at is not None and first.consent_at.strftime("%Y-%m-%d") in item
    assert ">watching<" in item and "Pause watching" in item
    assert "not set (the default, en)" in _item(page.text, await _channel_id(runtime, "chat-2"))
    assert "DM Someone" not in page.text  # direct chats are people, not channels
    assert "Paused means not read" in page.text


async def test_a_paused_channel_is_not_read_until_it_resumes(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await runtime.pipeline.opt_in(opt_in())
    channel_id = await _channel_id(runtime)
    kept = await runtime.pipeline.ingest(message("eerst nog gewoon gebabbel", "m1"))
    assert kept is not None
    cora, csrf = await _coordinator(runtime, client)
    done = await client.post(
        f"/channels/{channel_id}/watch", data={"paused": "1", "csrf_token": csrf}
    )
    assert done.status_code == 303
    page = await client.get("/channels")
    assert "Paused: nothing from Group chat-1 is read or stored" in page.text
    item = _item(page.text, channel_id)
    assert ">paused<" in item and "by cora" in item and "Resume watching" in item

    during = message("is xtc met alcohol gevaarlijk? TIJDENSPAUZE", "m2")
    assert await runtime.pipeline.ingest(during) is None
    edit = MessageEdit(channel(), "m1", "aangepast: hoeveel mdma TIJDENSPAUZE")
    assert await runtime.pipeline.edit(edit) is False
    assert await runtime.pipeline.watched_channels("fake") == []  # no history catch-up
    assert await runtime.store.list_cases() == []

    resumed = await client.post(
        f"/channels/{channel_id}/watch", data={"paused": "0", "csrf_token": csrf}
    )
    assert resumed.status_code == 303
    assert "Watching Group chat-1 again" in (await client.get("/channels")).text
    # Said during the pause, delivered late (or fetched by a catch-up): still not read.
    assert await runtime.pipeline.ingest(replace(during, message_id="m2-late")) is None
    after = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "m3"))
    assert after is not None and after.case_id is not None
    texts = await _stored(runtime)
    assert not any("TIJDENSPAUZE" in text for text in texts)
    actions = [
        (e["action"], e["actor"])
        for e in await runtime.store.audit_events("channel")
        if e["action"] in ("channel.pause", "channel.resume")
    ]
    assert actions == [("channel.pause", cora), ("channel.resume", cora)]


async def test_pausing_a_server_pauses_its_channels(runtime: Runtime) -> None:
    cora = await add_user(runtime, "cora", Role.COORDINATOR)
    server = ChannelRef("fake", "server:g1", "Guild", kind="server", server_id="g1")
    await runtime.pipeline.opt_in(OptIn(server, "admin-1", "Admin", datetime.now(UTC)))
    general = ChannelRef("fake", "c-general", "Guild #general", server_id="g1")
    assert await runtime.pipeline.ingest(message("hallo", "s1", chat=general)) is not None
    server_id = await _channel_id(runtime, "server:g1")
    await channel_admin.set_paused(runtime.store, server_id, True, by=cora.id)
    assert await runtime.pipeline.ingest(message("xtc?", "s2", chat=general)) is None
    # A channel of the paused server not seen before is not taken in either.
    other = ChannelRef("fake", "c-other", "Guild #other", server_id="g1")
    assert await runtime.pipeline.ingest(message("xtc?", "s3", chat=other)) is None
    assert await runtime.store.get_channel("fake", "c-other") is None
    await channel_admin.set_paused(runtime.store, server_id, False, by=cora.id)
    assert await runtime.pipeline.ingest(message("weer hallo", "s4", chat=general)) is not None


async def test_pausing_an_opted_out_channel_is_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    from bot.models import OptOut

    await runtime.pipeline.opt_in(opt_in())
    channel_id = await _channel_id(runtime)
    await runtime.pipeline.opt_out(OptOut(channel(), "admin-1", datetime.now(UTC)))
    _, csrf = await _coordinator(runtime, client)
    page = await client.get("/channels")
    assert ">opted out<" in _item(page.text, channel_id)
    assert "Pause watching" not in _item(page.text, channel_id)
    await client.post(f"/channels/{channel_id}/watch", data={"paused": "1", "csrf_token": csrf})
    assert "Not changed: this channel is not opted in" in (await client.get("/channels")).text


async def test_language_and_retention_per_channel(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await runtime.pipeline.opt_in(opt_in())
    channel_id = await _channel_id(runtime)
    cora, csrf = await _coordinator(runtime, client)
    saved = await client.post(
        f"/channels/{channel_id}/settings",
        data={
            "language": "fr",
            "retention_unanswered_days": "7",
            "retention_answered_days": "",
            "csrf_token": csrf,
        },
    )
    assert saved.status_code == 303
    page = await client.get("/channels")
    assert "Saved the settings of Group chat-1." in page.text
    item = _item(page.text, channel_id)
    assert "7 days without an answer, 180 days once answered" in item
    assert '<option value="fr" selected>' in item
    info = await channel_admin.channel(runtime.store, channel_id)
    assert (info.language, info.retention_unanswered_days, info.retention_answered_days) == (
        "fr",
        7,
        None,
    )
    # The channel's notices now speak French: the opt-out confirmation, for one.
    from bot.models import OptOut

    await runtime.pipeline.opt_out(OptOut(channel(language=None), "admin-1", datetime.now(UTC)))
    french = runtime.pipeline.text("optout_confirmation", "fr", channel_title="Group chat-1")
    assert french in [item.text for item in await runtime.store.outbox_items()]

    for field, value, words in (
        ("retention_unanswered_days", "31", "1 to 30 days"),
        ("retention_answered_days", "0", "1 to 180 days"),
        ("retention_unanswered_days", "abc", "a whole number of days"),
        ("language", "de", "language: one of nl, fr, en"),
    ):
        data = {"retention_unanswered_days": "7", "language": "fr", field: value}
        await client.post(f"/channels/{channel_id}/settings", data={**data, "csrf_token": csrf})
        assert words in (await client.get("/channels")).text, field
    still = await channel_admin.channel(runtime.store, channel_id)
    assert (still.language, still.retention_unanswered_days) == ("fr", 7)
    changes = [
        e for e in await runtime.store.audit_events("channel") if e["action"] == "channel.settings"
    ]
    assert [(e["actor"], e["details"]) for e in changes] == [
        (
            cora,
            {
                "language": {"from": "nl", "to": "fr"},
                "retention_unanswered_days": {"from": None, "to": 7},
            },
        )
    ]


async def _aged_case(rt: Runtime, chat: ChannelRef, text: str, author: str, days: int) -> int:
    result = await rt.pipeline.ingest(
        message(text, f"{chat.chat_id}-{author}", chat=chat, author=author)
    )
    assert result is not None and result.case_id is not None
    then = utcnow() - days * DAY
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.cases.update()
            .where(t.cases.c.id == result.case_id)
            .values(updated_at=then, created_at=then)
        )
        await conn.execute(
            t.messages.update()
            .where(t.messages.c.case_id == result.case_id)
            .values(received_at=then)
        )
    return result.case_id


async def test_the_purge_honours_a_channel_s_own_retention(runtime: Runtime) -> None:
    rt = runtime
    cora = await add_user(rt, "cora", Role.COORDINATOR)
    short, usual = channel("short"), channel("usual")
    for chat in (short, usual):
        await rt.pipeline.opt_in(opt_in(chat))
    short_id = await _channel_id(rt, "short")
    await channel_admin.set_options(
        rt.store,
        short_id,
        language="nl",
        retention_unanswered_days=5,
        retention_answered_days=20,
        privacy=rt.settings.privacy,
        by=cora.id,
    )
    open_short = await _aged_case(rt, short, "is xtc met alcohol gevaarlijk? KORT", "a1", 10)
    open_usual = await _aged_case(rt, usual, "is xtc met alcohol gevaarlijk? GEWOON", "a2", 10)
    recent_short = await _aged_case(rt, short, "wie heeft keta voor zaterdag? RECENT", "a7", 4)
    answered_short = await _aged_case(rt, short, "hoeveel mdma is te veel? KORTANTWOORD", "a3", 25)
    answered_usual = await _aged_case(rt, usual, "hoeveel mdma is te veel? ANTWOORD", "a4", 25)
    for case_id in (answered_short, answered_usual):
        await rt.store.approve_reply(
            case_id,
            text="Begin laag.",
            visibility=Visibility.PUBLIC,
            written_by=cora.id,
            approved_by=cora.id,
        )
    async with rt.store.engine.begin() as conn:  # approving counts as activity; age it again
        await conn.execute(
            t.cases.update()
            .where(t.cases.c.id.in_([answered_short, answered_usual]))
            .values(updated_at=utcnow() - 25 * DAY)
        )
    loose_short = await rt.pipeline.ingest(
        message("gewoon gebabbel LOSKORT", "l1", chat=short, author="a5")
    )
    loose_usual = await rt.pipeline.ingest(
        message("gewoon gebabbel LOSGEWOON", "l2", chat=usual, author="a6")
    )
    assert loose_short is not None and loose_usual is not None
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            t.messages.update()
            .where(t.messages.c.id.in_([loose_short.message_id, loose_usual.message_id]))
            .values(received_at=utcnow() - 10 * DAY)
        )

    counts = await purge(rt.store, rt.settings)

    assert counts == {"cases": 2, "messages": 3}
    async with rt.store.engine.connect() as conn:
        left = set((await conn.scalars(sa.select(t.cases.c.id))).all())
    assert left == {open_usual, answered_usual, recent_short}
    texts = " ".join(await _stored(rt))
    assert "KORT" not in texts and "LOSKORT" not in texts
    assert "GEWOON" in texts and "LOSGEWOON" in texts and "ANTWOORD" in texts
    assert "RECENT" in texts
    assert {r["case_id"] for r in await rt.store.archived_cases()} == {open_short, answered_short}
    # A channel's period never exceeds the setting: lowered settings win (the recent case
    # in the short channel is 4 days old: within its 5, past the lowered setting's 3).
    lower = replace(
        rt.settings,
        privacy=replace(
            rt.settings.privacy, retention_unanswered_days=3, retention_answered_days=8
        ),
    )
    assert await purge(rt.store, lower) == {"cases": 3, "messages": 4}


async def test_the_api(runtime: Runtime, client: httpx.AsyncClient) -> None:
    from bot.passwords import new_token, token_hash

    await runtime.pipeline.opt_in(opt_in())
    channel_id = await _channel_id(runtime)
    cora = await add_user(runtime, "cora", Role.COORDINATOR)
    token = new_token()
    await runtime.store.add_token(cora.id, token_hash(token))
    auth = {"authorization": f"Bearer {token}"}
    listed = (await client.get("/api/v1/channels", headers=auth)).json()["channels"]
    assert [(c["id"], c["status"], c["language"]) for c in listed] == [
        (channel_id, "watching", "nl")
    ]
    assert listed[0]["consent"]["by"] and listed[0]["opted_in_at"]
    changed = await client.patch(
        f"/api/v1/channels/{channel_id}",
        json={"paused": True, "retention_answered_days": 30},
        headers=auth,
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (
        body["status"],
        body["paused_by"],
        body["retention_answered_days"],
        body["language"],
    ) == (
        "paused",
        "cora",
        30,
        "nl",
    )
    assert await runtime.pipeline.ingest(message("xtc?", "api-1")) is None
    refused = await client.patch(
        f"/api/v1/channels/{channel_id}", json={"retention_unanswered_days": 999}, headers=auth
    )
    assert refused.status_code == 422
    cleared = await client.patch(
        f"/api/v1/channels/{channel_id}", json={"paused": False, "language": None}, headers=auth
    )
    assert (cleared.json()["status"], cleared.json()["language"]) == ("watching", None)
    assert (await client.patch("/api/v1/channels/9999", json={}, headers=auth)).status_code == 404

"""From an adapter's message to a stored case: each arrow of the flow."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bot import schema as t
from bot.events import CaseEvent, CaseEventKind
from bot.models import (
    CaseStatus,
    ChannelRef,
    MessageDeletion,
    MessageEdit,
    OptIn,
    OptOut,
    OutboxItem,
    OutboxStatus,
    Role,
    Visibility,
)
from bot.pipeline import MAX_TEXT_CHARS, server_chat_id
from bot.runtime import Runtime, build_runtime
from knowledge_base import Entry, to_markdown
from tests.conftest import make_settings
from tests.fakes import channel, message, opt_in


async def test_messages_from_channels_that_did_not_opt_in_are_dropped(runtime: Runtime) -> None:
    result = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?"))
    assert result is None
    assert await runtime.store.list_channels() == []
    assert await runtime.store.undetected_messages() == []
    assert await runtime.store.list_cases() == []


async def test_opt_in_queues_the_notice_in_the_channel_language(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in(channel("fr-1", language="fr")))
    await runtime.pipeline.opt_in(opt_in(channel("fr-1", language="fr")))
    (notice,) = await runtime.store.outbox_items()
    assert notice.status is OutboxStatus.PENDING
    assert "Group fr-1" in notice.text and "112" in notice.text and "Bonjour" in notice.text
    (ch,) = await runtime.store.list_channels()
    assert ch.consent_by is not None and ch.consent_by != "admin-1"  # pseudonymised


async def test_flagged_message_opens_a_case_with_reasons_and_suggestions(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    result = await runtime.pipeline.ingest(
        message("is het veilig om xtc te combineren met alcohol?")
    )
    assert result is not None and result.created and result.detection is not None
    assert result.detection.flagged and result.case_id is not None
    detail = await runtime.store.get_case(result.case_id)
    assert {r.term for r in detail.case.reasons} >= {"xtc", "alcohol"}
    assert detail.suggestions, "the seed FAQ should offer an answer"
    assert detail.suggestions[0].entry_id == "combo_mdma_alcohol"
    assert detail.case.author != "user-1"  # never the platform id


async def test_ordinary_chat_is_stored_but_opens_no_case(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    result = await runtime.pipeline.ingest(message("wie gaat er zaterdag mee naar de Vooruit?"))
    assert result is not None and result.case_id is None
    assert result.detection is not None and not result.detection.flagged
    assert await runtime.store.list_cases() == []
    assert (await runtime.store.get_message(result.message_id)).text.startswith("wie gaat")


async def test_redelivered_message_makes_no_second_case(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("keta en alcohol samen?", "10"))
    again = await runtime.pipeline.ingest(message("keta en alcohol samen?", "10"))
    assert first is not None and again is not None
    assert (again.created, again.message_id, again.case_id) == (
        False,
        first.message_id,
        first.case_id,
    )
    assert len(await runtime.store.list_cases()) == 1


async def test_follow_ups_attach_to_the_open_case(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("hoeveel xtc mag ik nemen?", "1"))
    calm = await runtime.pipeline.ingest(message("vraag voor zaterdag", "2"))
    other = await runtime.pipeline.ingest(
        message("goeie vraag, ik wil het ook weten", "3", author="user-2", reply_to="1")
    )
    stranger = await runtime.pipeline.ingest(message("iemand zin in frietjes?", "4", author="u3"))
    assert first is not None and calm is not None and other is not None and stranger is not None
    assert calm.case_id == first.case_id
    assert other.case_id == first.case_id
    assert stranger.case_id is None
    detail = await runtime.store.get_case(first.case_id or 0, context_messages=0)
    assert [m.platform_message_id for m in detail.messages] == ["1", "2", "3"]


async def test_urgent_follow_up_makes_the_case_urgent(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("we hebben GHB genomen", "1"))
    urgent = await runtime.pipeline.ingest(message("hij wordt niet wakker!!", "2"))
    assert first is not None and urgent is not None and urgent.case_id == first.case_id
    (case,) = await runtime.store.list_cases()
    assert case.urgent is True


async def test_huge_and_odd_messages_are_stored_safely(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    huge = "xtc " * 10_000 + "\x00<script>alert(1)</script>"
    result = await runtime.pipeline.ingest(message(huge, "1"))
    assert result is not None
    stored = await runtime.store.get_message(result.message_id)
    assert len(stored.text) == MAX_TEXT_CHARS + 1
    assert "\x00" not in stored.text
    empty = await runtime.pipeline.ingest(message("", "2", author="u9"))
    assert empty is not None and empty.case_id is None
    emoji = await runtime.pipeline.ingest(message("💊💊 ❄️ 🎈🎈🎈", "3", author="u8"))
    assert emoji is not None and emoji.detection is not None
    assert {"mdma", "cocaine", "nitrous_oxide"} <= set(emoji.detection.substances)


async def test_recover_processes_messages_stored_before_a_crash(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    ch = await runtime.store.get_channel("fake", "chat-1")
    assert ch is not None
    # Simulates a crash after "persist first" and before detection.
    await runtime.store.insert_message(ch.id, message("3-mmc is dat gevaarlijk?", "1"), "p1")
    assert await runtime.store.list_cases() == []
    assert await runtime.pipeline.recover() == 1
    (case,) = await runtime.store.list_cases()
    assert case.status is CaseStatus.OPEN and "cathinones" in case.substances
    assert await runtime.pipeline.recover() == 0


async def test_follow_up_suggestions_cover_the_whole_conversation(
    tmp_path: Path, database_url: str
) -> None:
    content = tmp_path / "faq"
    content.mkdir()
    for topic, question in [
        ("combo_mdma_alcohol", "xtc en alcohol samen"),
        ("detection_times", "hoelang kan je coke terugvinden in je urine"),
        ("festival_tips", "wat neem ik mee naar een festival"),
    ]:
        entry = Entry(
            id=topic,
            topic=topic,
            status="in_review",
            questions={"nl": (question,)},
            answers={"nl": f"Antwoord over {topic}."},
        )
        (content / f"{topic}.md").write_text(to_markdown(entry), encoding="utf-8")
    settings = make_settings(
        tmp_path, database_url, PEERDESK_KNOWLEDGE_BASE_CONTENT_DIR=str(content)
    )
    rt = await build_runtime(settings)
    try:
        await rt.pipeline.opt_in(opt_in())
        first = await rt.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "1"))
        await rt.pipeline.ingest(message("en hoelang kan je coke terugvinden in je pis?", "2"))
        assert first is not None and first.case_id is not None
        detail = await rt.store.get_case(first.case_id)
        assert {s.entry_id for s in detail.suggestions} == {"combo_mdma_alcohol", "detection_times"}
    finally:
        await rt.close()


async def test_a_redelivered_message_that_failed_processing_is_processed(
    runtime: Runtime,
) -> None:
    await runtime.pipeline.opt_in(opt_in())
    ch = await runtime.store.get_channel("fake", "chat-1")
    assert ch is not None
    # Stored, then processing failed (the platform will redeliver it).
    await runtime.store.insert_message(ch.id, message("mijn vriend ademt niet meer na G", "7"), "p")
    again = await runtime.pipeline.ingest(message("mijn vriend ademt niet meer na G", "7"))
    assert again is not None and again.created is False and again.case_id is not None
    (case,) = await runtime.store.list_cases()
    assert case.urgent is True


async def test_a_message_filed_by_several_workers_at_once_makes_one_case(
    runtime: Runtime,
) -> None:
    """A redelivery reaching two instances at once, and the minute's recovery, may all find
    the same stored message not yet processed: only one of them files it (seen in CI: two
    consoles behind a proxy opened a second, empty case)."""
    await runtime.pipeline.opt_in(opt_in())
    ch = await runtime.store.get_channel("fake", "chat-1")
    assert ch is not None
    for n in range(5):
        await runtime.store.insert_message(
            ch.id, message(f"keta en xtc samen? ({n})", str(n)), f"p{n}"
        )
    async with runtime.events.subscribe() as events:
        results = await asyncio.gather(
            *[
                runtime.pipeline.ingest(message(f"keta en xtc samen? ({n})", str(n)))
                for n in range(5)
            ],
            *[
                runtime.pipeline.ingest(message(f"keta en xtc samen? ({n})", str(n)))
                for n in range(5)
            ],
            runtime.pipeline.recover(),
        )
        published = [events.queue.get_nowait() for _ in range(events.queue.qsize())]
    opened = [
        e.case_id for e in published if isinstance(e, CaseEvent) and e.kind is CaseEventKind.OPENED
    ]
    cases = await runtime.store.list_cases()
    assert len(cases) == 5
    async with runtime.store.engine.connect() as conn:
        filed = (await conn.execute(sa.select(t.messages.c.id, t.messages.c.case_id))).all()
    assert sorted(r.case_id for r in filed) == sorted(c.id for c in cases)
    # Each ingest answers with the case its message is in, whoever filed it.
    by_message = {r.id: r.case_id for r in filed}
    for result in results[:10]:
        assert result is not None and result.case_id == by_message[result.message_id]
    assert sorted(opened) == sorted(c.id for c in cases)  # one "opened" event per case


async def test_platform_ids_are_kept_only_for_case_authors(runtime: Runtime) -> None:
    import sqlalchemy as sa

    from bot.schema import contacts

    await runtime.pipeline.opt_in(opt_in())
    await runtime.pipeline.ingest(message("wie gaat er mee naar de film?", "1", author="chatter"))
    await runtime.pipeline.ingest(message("is 3mmc gevaarlijk?", "2", author="asker"))
    async with runtime.store.engine.connect() as conn:
        kept = set((await conn.scalars(sa.select(contacts.c.platform_user_id))).all())
    assert kept == {"asker"}


# -- direct conversations with the bot ------------------------------------------------------


def _direct(chat_id: str = "dm-1") -> ChannelRef:
    return ChannelRef(platform="fake", chat_id=chat_id, title="Private chat", kind="direct")


async def _notices(rt: Runtime) -> list[OutboxItem]:
    return [i for i in await rt.store.outbox_items() if i.kind == "notice"]


async def _answer(rt: Runtime, case_id: int, text: str = "Goed dat je het vraagt.") -> None:
    user = await rt.store.user_credentials("vol")
    volunteer = user[0] if user else await rt.store.add_user("vol", "h", Role.VOLUNTEER)
    await rt.store.approve_reply(
        case_id,
        text=text,
        visibility=Visibility.PUBLIC,
        written_by=volunteer.id,
        approved_by=volunteer.id,
    )


async def _age_case(rt: Runtime, case_id: int, *, hours: float) -> None:
    """Move a case's last activity into the past (the pipeline reads the real clock)."""
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            sa.update(t.cases)
            .where(t.cases.c.id == case_id)
            .values(updated_at=datetime.now(UTC) - timedelta(hours=hours))
        )


async def test_a_direct_message_opens_a_case_and_is_acknowledged_once(runtime: Runtime) -> None:
    first = await runtime.pipeline.ingest(
        message("hallo, mag ik iets vragen?", "1", chat=_direct())
    )
    assert first is not None and first.detection is not None
    assert first.detection.flagged is False  # not about drugs, still a question for us
    assert first.case_id is not None
    (notice,) = await _notices(runtime)
    assert notice.text == runtime.pipeline.text("dm_acknowledgement", first.detection.language)
    assert notice.status is OutboxStatus.PENDING
    channel = await runtime.store.get_channel("fake", "dm-1")
    assert channel is not None and channel.opted_in and channel.kind == "direct"
    assert notice.channel_id == channel.id

    follow_up = await runtime.pipeline.ingest(message("het gaat over xtc", "2", chat=_direct()))
    assert follow_up is not None and follow_up.case_id == first.case_id
    assert len(await _notices(runtime)) == 1  # no second acknowledgement
    (case,) = await runtime.store.list_cases()
    assert case.channel_kind == "direct" and case.status is CaseStatus.OPEN
    author = runtime.pipeline.pseudonymize("fake", "user-1")
    assert await runtime.store.direct_ok(author) is True


async def test_a_follow_up_to_an_answered_direct_case_reopens_it(runtime: Runtime) -> None:
    first = await runtime.pipeline.ingest(message("is speed gevaarlijk?", "1", chat=_direct()))
    assert first is not None and first.case_id is not None
    await _answer(runtime, first.case_id)
    assert (await runtime.store.get_case(first.case_id)).case.status is CaseStatus.ANSWERED
    assert runtime.settings.pipeline.direct_followup_hours == 72
    await _age_case(runtime, first.case_id, hours=71)  # still within the window

    again = await runtime.pipeline.ingest(message("en met alcohol erbij?", "2", chat=_direct()))
    assert again is not None and again.case_id == first.case_id
    assert (await runtime.store.get_case(first.case_id)).case.status is CaseStatus.OPEN
    assert len(await _notices(runtime)) == 1


async def test_a_direct_message_after_the_follow_up_window_opens_a_new_case(
    runtime: Runtime,
) -> None:
    first = await runtime.pipeline.ingest(message("is speed gevaarlijk?", "1", chat=_direct()))
    assert first is not None and first.case_id is not None
    await _answer(runtime, first.case_id)
    await _age_case(runtime, first.case_id, hours=73)

    later = await runtime.pipeline.ingest(message("nieuwe vraag over 2cb", "2", chat=_direct()))
    assert later is not None and later.case_id not in (None, first.case_id)
    assert (await runtime.store.get_case(first.case_id)).case.status is CaseStatus.ANSWERED
    assert len(await _notices(runtime)) == 2  # a new case, a new acknowledgement


async def test_a_direct_message_after_a_dismissed_case_opens_a_new_case(
    runtime: Runtime,
) -> None:
    first = await runtime.pipeline.ingest(message("oeps, verkeerde chat", "1", chat=_direct()))
    assert first is not None and first.case_id is not None
    # The only message was deleted: the case is dismissed.
    assert await runtime.pipeline.delete(MessageDeletion(channel=_direct(), message_id="1"))
    assert (await runtime.store.get_case(first.case_id)).case.status is CaseStatus.DISMISSED

    again = await runtime.pipeline.ingest(message("is 3mmc gevaarlijk?", "2", chat=_direct()))
    assert again is not None and again.case_id not in (None, first.case_id)
    assert len(await _notices(runtime)) == 2


async def test_direct_chats_of_two_people_are_two_cases(runtime: Runtime) -> None:
    ann = await runtime.pipeline.ingest(message("vraag", "1", chat=_direct("dm-a"), author="a"))
    bob = await runtime.pipeline.ingest(message("vraag", "1", chat=_direct("dm-b"), author="b"))
    assert ann is not None and bob is not None and ann.case_id != bob.case_id
    assert len(await _notices(runtime)) == 2


# -- server-wide opt-in -----------------------------------------------------------------------


def _server(server_id: str = "g1") -> ChannelRef:
    return ChannelRef(
        platform="fake",
        chat_id=server_chat_id(server_id),
        title="Festival server",
        kind="server",
        language="fr",
    )


def _in_server(chat_id: str, server_id: str = "g1") -> ChannelRef:
    return ChannelRef(platform="fake", chat_id=chat_id, title=f"#{chat_id}", server_id=server_id)


async def test_a_server_opt_in_covers_its_channels(runtime: Runtime) -> None:
    assert await runtime.pipeline.opt_in(opt_in(_server())) is True
    assert len(await _notices(runtime)) == 1
    result = await runtime.pipeline.ingest(
        message("is xtc met alcohol gevaarlijk?", "1", chat=_in_server("c1"))
    )
    assert result is not None and result.created and result.case_id is not None
    channel = await runtime.store.get_channel("fake", "c1")
    server = await runtime.store.get_channel("fake", server_chat_id("g1"))
    assert channel is not None and server is not None
    assert (channel.opted_in, channel.server_id, channel.kind) == (True, "g1", "group")
    assert channel.consent_by == server.consent_by  # the server admin's consent
    assert channel.language == "fr"  # the server's language when the channel has none
    assert len(await _notices(runtime)) == 1  # the server's notice only
    second = await runtime.pipeline.ingest(message("nog iets", "2", chat=_in_server("c1")))
    assert second is not None and second.case_id == result.case_id
    assert len(await runtime.store.list_channels()) == 2


async def test_a_channel_that_opted_out_on_its_own_stays_dropped(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in(_server()))
    assert await runtime.pipeline.ingest(message("hallo", "1", chat=_in_server("c2"))) is not None
    optout = OptOut(channel=_in_server("c2"), admin_id="admin-1", at=datetime.now(UTC))
    assert await runtime.pipeline.opt_out(optout) is True
    dropped = await runtime.pipeline.ingest(
        message("is xtc met alcohol gevaarlijk?", "2", chat=_in_server("c2"))
    )
    assert dropped is None
    assert await runtime.store.list_cases(statuses=tuple(CaseStatus)) == []
    channel = await runtime.store.get_channel("fake", "c2")
    assert channel is not None and channel.opted_in is False
    # Another channel of the same server is still covered.
    assert await runtime.pipeline.ingest(message("hallo", "3", chat=_in_server("c3"))) is not None


async def test_a_channel_of_a_server_that_did_not_opt_in_is_dropped(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in(_server("g1")))
    result = await runtime.pipeline.ingest(
        message("is xtc met alcohol gevaarlijk?", "1", chat=_in_server("c1", server_id="g9"))
    )
    assert result is None
    assert await runtime.store.get_channel("fake", "c1") is None
    assert await runtime.store.undetected_messages() == []
    assert await _count(runtime, t.messages) == 0


async def test_a_server_opt_out_stops_the_channels_it_covered(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in(_server()))
    assert await runtime.pipeline.ingest(message("hallo", "1", chat=_in_server("c1"))) is not None
    assert await runtime.pipeline.opt_out(_optout(_server())) is True
    assert await runtime.pipeline.ingest(message("xtc?", "2", chat=_in_server("c1"))) is None
    assert await runtime.pipeline.ingest(message("xtc?", "1", chat=_in_server("c5"))) is None
    c1 = await runtime.store.get_channel("fake", "c1")
    assert c1 is not None and c1.opted_in is False
    assert await runtime.pipeline.watched_channels("fake") == []


# -- opt-out ---------------------------------------------------------------------------------


async def _count(rt: Runtime, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    async with rt.store.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        return int(await conn.scalar(query.where(*where) if where else query) or 0)


async def _busy_channel(rt: Runtime, chat: ChannelRef) -> int:
    """A channel with chatter, a case with suggestions and an approved, queued reply."""
    await rt.pipeline.opt_in(opt_in(chat))
    await rt.pipeline.ingest(message("wie gaat er mee naar de film?", "1", chat=chat, author="x"))
    result = await rt.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "2", chat=chat))
    assert result is not None and result.case_id is not None
    await _answer(rt, result.case_id, text=f"Antwoord in {chat.chat_id}")
    return result.case_id


def _optout(chat: ChannelRef | None = None) -> OptOut:
    return OptOut(channel=chat or channel(), admin_id="admin-1", at=datetime.now(UTC))


async def test_opt_out_of_a_channel_that_is_not_watched_does_nothing(runtime: Runtime) -> None:
    assert await runtime.pipeline.opt_out(_optout()) is False
    assert await runtime.store.list_channels() == []
    assert await runtime.store.outbox_items() == []
    await runtime.pipeline.opt_in(opt_in())
    assert await runtime.pipeline.opt_out(_optout()) is True
    assert await runtime.pipeline.opt_out(_optout()) is False  # already out
    # The pending opt-in notice was purged; one confirmation, not two.
    confirmation = runtime.pipeline.text("optout_confirmation", "nl", channel_title="Group chat-1")
    assert [n.text for n in await _notices(runtime)] == [confirmation]


async def test_opt_out_purges_the_channel_and_keeps_the_consent_record(runtime: Runtime) -> None:
    gone = channel("chat-1")
    kept = channel("chat-2")
    case_id = await _busy_channel(runtime, gone)
    other_case = await _busy_channel(runtime, kept)
    ch = await runtime.store.get_channel("fake", "chat-1")
    assert ch is not None and (await runtime.store.get_case(case_id)).suggestions
    assert runtime.settings.privacy.purge_on_optout is True

    assert await runtime.pipeline.opt_out(_optout(gone)) is True

    assert await _count(runtime, t.messages, t.messages.c.channel_id == ch.id) == 0
    assert await _count(runtime, t.cases, t.cases.c.channel_id == ch.id) == 0
    assert await _count(runtime, t.suggestions, t.suggestions.c.case_id == case_id) == 0
    assert await _count(runtime, t.replies, t.replies.c.case_id == case_id) == 0
    outbox = [i for i in await runtime.store.outbox_items() if i.channel_id == ch.id]
    assert [(i.kind, i.status) for i in outbox] == [("notice", OutboxStatus.PENDING)]
    assert outbox[0].text == runtime.pipeline.text(
        "optout_confirmation", "nl", channel_title="Group chat-1"
    )
    after = await runtime.store.get_channel("fake", "chat-1")
    assert after is not None and after.opted_in is False
    assert (after.consent_by, after.consent_at) == (ch.consent_by, ch.consent_at)
    # The other channel is untouched.
    detail = await runtime.store.get_case(other_case)
    assert [r.text for r in detail.replies] == ["Antwoord in chat-2"] and detail.suggestions
    assert await runtime.store.direct_ok(runtime.pipeline.pseudonymize("fake", "user-1")) is None
    # Later messages from the channel are dropped.
    assert await runtime.pipeline.ingest(message("en nu?", "9", chat=gone)) is None
    assert await _count(runtime, t.messages, t.messages.c.channel_id == ch.id) == 0


async def test_opt_out_without_purge_keeps_what_was_stored(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, PEERDESK_PRIVACY_PURGE_ON_OPTOUT="false")
    rt = await build_runtime(settings)
    try:
        case_id = await _busy_channel(rt, channel())
        assert await rt.pipeline.opt_out(_optout()) is True
        ch = await rt.store.get_channel("fake", "chat-1")
        assert ch is not None and ch.opted_in is False
        assert await _count(rt, t.messages, t.messages.c.channel_id == ch.id) == 2
        detail = await rt.store.get_case(case_id)
        assert [r.text for r in detail.replies] == ["Antwoord in chat-1"] and detail.suggestions
        kinds = [(i.kind, i.status) for i in await rt.store.outbox_items()]
        assert kinds == [
            ("notice", OutboxStatus.PENDING),  # the opt-in notice, still to go
            ("reply", OutboxStatus.PENDING),
            ("notice", OutboxStatus.PENDING),  # the confirmation
        ]
        assert await rt.pipeline.ingest(message("en nu?", "9")) is None
        assert await _count(rt, t.messages, t.messages.c.channel_id == ch.id) == 2
        # An edit arriving after the opt-out is not new text to keep either.
        edit = MessageEdit(channel=channel(), message_id="1", text="is xtc met alcohol ok?")
        assert await rt.pipeline.edit(edit) is False
        assert len(await rt.store.list_cases(statuses=tuple(CaseStatus))) == 1
        texts = [m.text for m in (await rt.store.get_case(case_id)).messages]
        assert "is xtc met alcohol ok?" not in texts
    finally:
        await rt.close()


# -- edits and deletions ---------------------------------------------------------------------


async def test_an_edit_of_an_unknown_message_changes_nothing(runtime: Runtime) -> None:
    edit = MessageEdit(channel=channel(), message_id="404", text="xtc?")
    assert await runtime.pipeline.edit(edit) is False  # unknown channel
    await runtime.pipeline.opt_in(opt_in())
    assert await runtime.pipeline.edit(edit) is False  # unknown message
    assert await _count(runtime, t.messages) == 0


async def test_an_edit_into_a_drug_question_opens_a_case(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    chat = await runtime.pipeline.ingest(message("wie gaat er zaterdag mee?", "1"))
    assert chat is not None and chat.case_id is None
    edit = MessageEdit(channel=channel(), message_id="1", text="is xtc met alcohol gevaarlijk?")
    assert await runtime.pipeline.edit(edit) is True
    stored = await runtime.store.get_message(chat.message_id)
    assert stored.text == "is xtc met alcohol gevaarlijk?"
    assert stored.edited_at is not None and stored.detected and stored.flagged
    assert stored.case_id is not None
    detail = await runtime.store.get_case(stored.case_id)
    assert detail.case.first_message_id == chat.message_id
    assert {r.term for r in detail.case.reasons} >= {"xtc", "alcohol"}
    assert detail.suggestions
    # Without the author's id the edit's case has no private address; with it, it has.
    assert not await runtime.store.has_contact(stored.author)
    other = await runtime.pipeline.ingest(message("wie rijdt er?", "2", author="user-2"))
    assert other is not None
    edit = MessageEdit(channel(), "2", "hoeveel ketamine is te veel?", author_id="user-2")
    assert await runtime.pipeline.edit(edit) is True
    second = await runtime.store.get_message(other.message_id)
    assert second.case_id is not None and await runtime.store.has_contact(second.author)


async def test_an_edit_of_a_message_in_a_case_keeps_it_in_the_case(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "1"))
    assert first is not None and first.case_id is not None
    edit = MessageEdit(channel=channel(), message_id="1", text="is xtc met wiet gevaarlijk?")
    assert await runtime.pipeline.edit(edit) is True
    detail = await runtime.store.get_case(first.case_id, context_messages=0)
    (stored,) = detail.messages
    assert (stored.id, stored.text, stored.case_id) == (
        first.message_id,
        "is xtc met wiet gevaarlijk?",
        first.case_id,
    )
    assert stored.edited_at is not None
    assert "cannabis" in detail.case.substances and "alcohol" not in detail.case.substances
    assert len(await runtime.store.list_cases()) == 1


async def test_a_deleted_message_loses_its_text_and_its_lone_case(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "1"))
    assert first is not None and first.case_id is not None
    deletion = MessageDeletion(channel=channel(), message_id="1")
    assert await runtime.pipeline.delete(deletion) is True
    stored = await runtime.store.get_message(first.message_id)
    assert (stored.text, stored.author_name, stored.reasons) == ("", "", ())
    assert (stored.flagged, stored.substances) == (False, ())
    assert stored.deleted_at is not None
    assert (await runtime.store.get_case(first.case_id)).case.status is CaseStatus.DISMISSED
    assert await runtime.pipeline.delete(deletion) is False  # twice
    edit = MessageEdit(channel=channel(), message_id="1", text="toch niet")
    assert await runtime.pipeline.edit(edit) is False  # a deleted message stays deleted
    assert (await runtime.store.get_message(first.message_id)).text == ""
    unknown = MessageDeletion(channel=channel(), message_id="404")
    assert await runtime.pipeline.delete(unknown) is False


async def test_deleting_one_of_several_messages_keeps_the_case_open(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "1"))
    second = await runtime.pipeline.ingest(message("en met speed?", "2"))
    assert first is not None and second is not None and second.case_id == first.case_id
    assert await runtime.pipeline.delete(MessageDeletion(channel=channel(), message_id="1"))
    detail = await runtime.store.get_case(first.case_id or 0)
    assert detail.case.status is CaseStatus.OPEN
    assert [m.text for m in detail.messages] == ["", "en met speed?"]


# -- a person's data: export and erasure -----------------------------------------------------

ANN_TEXTS = ("annxtcvraag alcohol xtc?", "annvolgvraag ketamine?", "annprivevraag hallo")


async def _two_people(rt: Runtime) -> dict[str, int]:
    """Ann asks in a group and privately, made a group's opt-in and got replies; Bob asks
    in the same group and answers into Ann's case."""
    await rt.pipeline.opt_in(opt_in())
    ann = await rt.pipeline.ingest(message(ANN_TEXTS[0], "1", author="ann"))
    await rt.pipeline.ingest(message(ANN_TEXTS[1], "2", author="ann"))
    bob = await rt.pipeline.ingest(message("bobvraag is speed gevaarlijk?", "3", author="bob"))
    await rt.pipeline.ingest(message("bobantwoord drink water", "4", author="bob", reply_to="1"))
    dm = await rt.pipeline.ingest(message(ANN_TEXTS[2], "1", chat=_direct(), author="ann"))
    admin = OptIn(
        channel=channel("ann-admins"), admin_id="ann", admin_name="Ann", at=datetime.now(UTC)
    )
    await rt.pipeline.opt_in(admin)
    assert ann is not None and bob is not None and dm is not None
    assert ann.case_id and bob.case_id and dm.case_id
    volunteer = await rt.store.add_user("vol", "h", Role.VOLUNTEER)
    for case_id, text, visibility in [
        (ann.case_id, "annreply private answer", Visibility.PRIVATE),
        (dm.case_id, "annreply direct answer", Visibility.PUBLIC),
        (bob.case_id, "bobreply group answer", Visibility.PUBLIC),
    ]:
        await rt.store.approve_reply(
            case_id,
            text=text,
            visibility=visibility,
            written_by=volunteer.id,
            approved_by=volunteer.id,
        )
    return {"ann": ann.case_id, "bob": bob.case_id, "ann_dm": dm.case_id}


async def _everything(rt: Runtime) -> list[tuple[str, str]]:
    """Every value of every row of every table, as text: (table, value)."""
    found = []
    async with rt.store.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                for value in row:
                    if isinstance(value, dict | list):
                        value = json.dumps(value, ensure_ascii=False)
                    elif isinstance(value, bytes):
                        value = value.decode("latin-1")
                    found.append((table.name, str(value)))
    return found


async def test_export_person_returns_their_data_and_nobody_elses(runtime: Runtime) -> None:
    cases = await _two_people(runtime)
    data = await runtime.pipeline.export_person("fake", "ann")
    assert data["pseudonym"] == runtime.pipeline.pseudonymize("fake", "ann")
    assert [m["text"] for m in data["messages"]] == list(ANN_TEXTS)
    assert {m["channel"] for m in data["messages"]} == {"Group chat-1", "Private chat"}
    assert [c["id"] for c in data["cases"]] == [cases["ann"], cases["ann_dm"]]
    assert sorted(r["text"] for r in data["replies"]) == [
        "annreply direct answer",
        "annreply private answer",
    ]
    assert data["contact_kept"] is True
    dumped = json.dumps(data, ensure_ascii=False)
    assert "bob" not in dumped
    assert runtime.pipeline.pseudonymize("fake", "bob") not in dumped
    nobody = await runtime.pipeline.export_person("fake", "stranger")
    assert (nobody["messages"], nobody["cases"], nobody["replies"], nobody["contact_kept"]) == (
        [],
        [],
        [],
        False,
    )


async def test_erase_person_leaves_no_trace_of_them(runtime: Runtime) -> None:
    cases = await _two_people(runtime)
    ann = runtime.pipeline.pseudonymize("fake", "ann")
    bob = runtime.pipeline.pseudonymize("fake", "bob")
    assert any(ann in value for _, value in await _everything(runtime))

    counts = await runtime.pipeline.erase_person("fake", "ann")

    assert counts == {"messages": 3, "cases": 2, "direct_chats": 1}
    needles = (ann, *ANN_TEXTS, "annreply", "Name ann")
    traces = [(table, v) for table, v in await _everything(runtime) if any(n in v for n in needles)]
    assert traces == []
    # Bob's data survives, including his answer into Ann's (now erased) case.
    bob_data = await runtime.pipeline.export_person("fake", "bob")
    assert [m["text"] for m in bob_data["messages"]] == [
        "bobvraag is speed gevaarlijk?",
        "bobantwoord drink water",
    ]
    assert [c["id"] for c in bob_data["cases"]] == [cases["bob"]]
    assert [r.text for r in (await runtime.store.get_case(cases["bob"])).replies] == [
        "bobreply group answer"
    ]
    assert await runtime.store.direct_ok(bob) is None  # his contact is kept, unknown reach
    assert await _count(runtime, t.contacts, t.contacts.c.pseudonym == bob) == 1
    # The group Ann opted in stays opted in, its consent record without her pseudonym.
    group = await runtime.store.get_channel("fake", "ann-admins")
    assert group is not None and group.opted_in and group.consent_by == "erased"
    assert await runtime.store.get_channel("fake", "dm-1") is None
    assert (await runtime.pipeline.export_person("fake", "ann"))["messages"] == []


async def test_a_direct_message_after_erasure_starts_afresh(runtime: Runtime) -> None:
    before = await runtime.pipeline.ingest(message("vraag", "1", chat=_direct(), author="ann"))
    assert before is not None and before.case_id is not None
    old = await runtime.store.get_channel("fake", "dm-1")
    await runtime.pipeline.erase_person("fake", "ann")
    assert await runtime.store.get_channel("fake", "dm-1") is None
    assert await _notices(runtime) == []  # the acknowledgement went with the chat

    after = await runtime.pipeline.ingest(message("vraag", "1", chat=_direct(), author="ann"))
    assert after is not None and after.created and after.case_id is not None
    new = await runtime.store.get_channel("fake", "dm-1")
    # A new row (SQLite may reuse the id): consent given again by writing again.
    assert old is not None and new is not None and new.opted_in
    assert old.consent_at is not None and new.consent_at is not None
    assert new.consent_at > old.consent_at
    (case,) = await runtime.store.list_cases()
    assert case.id == after.case_id and case.channel_id == new.id
    assert len(await _notices(runtime)) == 1  # acknowledged again
    assert await runtime.store.direct_ok(runtime.pipeline.pseudonymize("fake", "ann")) is True


# -- where a catch-up starts -----------------------------------------------------------------


async def test_watched_channels_name_the_newest_stored_message(runtime: Runtime) -> None:
    busy, quiet, gone = channel("busy"), channel("quiet"), channel("gone")
    for chat in (busy, quiet, gone):
        await runtime.pipeline.opt_in(opt_in(chat))
    await runtime.pipeline.opt_in(opt_in(_server()))
    await runtime.pipeline.opt_in(
        opt_in(ChannelRef(platform="other", chat_id="o1", title="Elsewhere"))
    )
    for message_id in ("5", "9", "7"):  # arrival order, not the id's order, decides
        await runtime.pipeline.ingest(message("hallo", message_id, chat=busy))
    await runtime.pipeline.ingest(message("hallo", "3", chat=gone))
    await runtime.pipeline.opt_out(_optout(gone))

    watched = await runtime.pipeline.watched_channels("fake")

    assert [(ref.chat_id, last) for ref, last in watched] == [("busy", "7"), ("quiet", None)]
    assert watched[0][0] == ChannelRef(
        platform="fake", chat_id="busy", title="Group busy", kind="group", language="nl"
    )
    assert await runtime.pipeline.watched_channels("nowhere") == []


async def test_reachable_marks_only_people_whose_address_is_kept(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    result = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "1"))
    assert result is not None and result.case_id is not None
    author = (await runtime.store.get_message(result.message_id)).author
    assert await runtime.store.direct_ok(author) is None
    await runtime.pipeline.reachable("fake", "user-1")
    assert await runtime.store.direct_ok(author) is True
    await runtime.pipeline.reachable("fake", "someone-without-a-case")
    stranger = runtime.pipeline.pseudonymize("fake", "someone-without-a-case")
    assert not await runtime.store.has_contact(stranger)


async def test_case_changes_are_published_for_the_live_queue(runtime: Runtime) -> None:
    await runtime.pipeline.opt_in(opt_in())
    async with runtime.events.subscribe() as events:
        await runtime.pipeline.ingest(message("hallo allemaal", "e0"))  # no case: no event
        first = await runtime.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "e1"))
        await runtime.pipeline.ingest(message("wordt niet wakker na G", "e2"))
        await runtime.pipeline.delete(MessageDeletion(channel(), "e2"))
        assert first is not None and first.case_id is not None
        got = [await events.get() for _ in range(3)]
        assert [(e.kind, e.case_id, e.urgent) for e in got if e] == [
            (CaseEventKind.OPENED, first.case_id, False),
            (CaseEventKind.UPDATED, first.case_id, True),
            (CaseEventKind.UPDATED, first.case_id, False),
        ]
        assert events.queue.empty()

"""From an adapter's message to a stored case: each arrow of the flow."""

from __future__ import annotations

from pathlib import Path

from bot.models import CaseStatus, OutboxStatus
from bot.pipeline import MAX_TEXT_CHARS
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


async def test_platform_ids_are_kept_only_for_case_authors(runtime: Runtime) -> None:
    import sqlalchemy as sa

    from bot.schema import contacts

    await runtime.pipeline.opt_in(opt_in())
    await runtime.pipeline.ingest(message("wie gaat er mee naar de film?", "1", author="chatter"))
    await runtime.pipeline.ingest(message("is 3mmc gevaarlijk?", "2", author="asker"))
    async with runtime.store.engine.connect() as conn:
        kept = set((await conn.scalars(sa.select(contacts.c.platform_user_id))).all())
    assert kept == {"asker"}

"""The outbox worker: delivery, outages, rate limits, permanent failures, crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.adapter import (
    PermanentDeliveryError,
    PlatformUnavailable,
    RateLimited,
    RecipientUnreachable,
)
from bot.demo_adapter import DemoAdapter
from bot.models import OutboxItem, OutboxStatus, OutgoingMessage, ReplyStatus, Role, Visibility
from bot.outbox import OutboxWorker
from bot.runtime import Runtime
from bot.settings import OutboxSettings
from bot.splitting import split_text, units
from console.replies import ReplyRefused, send_reply
from tests.fakes import FakeAdapter, RecordingInbox, channel, message, opt_in


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


SETTINGS = OutboxSettings(poll_seconds=0.01, max_attempts=3, retry_seconds=10.0, lease_seconds=60.0)


async def _approved_reply(rt: Runtime, *, visibility: Visibility = Visibility.PUBLIC) -> int:
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "55"))
    assert result is not None and result.case_id is not None
    user = await rt.store.add_user("vol", "h", Role.VOLUNTEER)
    reply = await rt.store.approve_reply(
        result.case_id,
        text="Be careful",
        visibility=visibility,
        written_by=user.id,
        approved_by=user.id,
    )
    return result.case_id if reply else 0


def _worker(rt: Runtime, adapter: FakeAdapter, clock: Callable[[], datetime]) -> OutboxWorker:
    return OutboxWorker(rt.store, {"fake": adapter}, SETTINGS, clock=clock)


async def test_delivers_notice_and_reply_and_marks_them_sent(runtime: Runtime) -> None:
    case_id = await _approved_reply(runtime)
    adapter = FakeAdapter()
    worker = _worker(runtime, adapter, Clock())
    assert await worker.run_once() == 2
    assert [m.text for m in adapter.sent][1] == "Be careful"
    assert adapter.sent[1].reply_to_message_id == "55"
    assert [i.status for i in await runtime.store.outbox_items()] == [OutboxStatus.SENT] * 2
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert (reply.status, reply.platform_message_id) == (ReplyStatus.SENT, "sent-2")
    assert await worker.run_once() == 0  # delivered once


async def test_rate_limit_waits_as_told_and_loses_nothing(runtime: Runtime) -> None:
    await _approved_reply(runtime)
    adapter = FakeAdapter()
    adapter.failures.append(RateLimited("429", retry_after=30))
    clock = Clock()
    worker = _worker(runtime, adapter, clock)
    assert await worker.run_once() == 2
    # The notice got the 429; the reply to the same chat waits without being tried.
    assert adapter.sent == []
    clock.advance(29)
    assert await worker.run_once() == 0
    clock.advance(2)
    assert await worker.run_once() == 2
    assert len(adapter.sent) == 2


async def test_a_rate_limit_holds_back_only_its_own_chat(runtime: Runtime) -> None:
    await _approved_reply(runtime)  # chat-1: the opt-in notice and a reply
    other = channel("chat-2")
    await runtime.pipeline.opt_in(opt_in(other))  # chat-2: its opt-in notice
    adapter = FakeAdapter()
    adapter.failures.append(RateLimited("429", retry_after=30))
    clock = Clock()
    worker = _worker(runtime, adapter, clock)
    assert await worker.run_once() == 3
    assert [m.channel.chat_id for m in adapter.sent] == ["chat-2"]
    clock.advance(31)
    assert await worker.run_once() == 2
    assert [m.channel.chat_id for m in adapter.sent] == ["chat-2", "chat-1", "chat-1"]


async def test_outages_are_retried_past_max_attempts(runtime: Runtime) -> None:
    await _approved_reply(runtime)
    adapter = FakeAdapter()
    adapter.failures.extend(PlatformUnavailable("down") for _ in range(10))
    clock = Clock()
    worker = _worker(runtime, adapter, clock)
    for _ in range(5):
        await worker.run_once()
        clock.advance(700)
    assert all(i.status is OutboxStatus.PENDING for i in await runtime.store.outbox_items())
    for _ in range(3):
        await worker.run_once()
        clock.advance(700)
    assert [i.status for i in await runtime.store.outbox_items()] == [OutboxStatus.SENT] * 2


async def test_permanent_errors_fail_the_reply_at_once(runtime: Runtime) -> None:
    case_id = await _approved_reply(runtime)
    adapter = FakeAdapter()
    clock = Clock()
    worker = _worker(runtime, adapter, clock)
    await worker.run_once()
    assert len(adapter.sent) == 2
    # A second reply to a chat the bot was removed from:
    user = await runtime.store.user_credentials("vol")
    assert user is not None
    await runtime.store.approve_reply(
        case_id,
        text="again",
        visibility=Visibility.PUBLIC,
        written_by=user[0].id,
        approved_by=user[0].id,
    )
    adapter.failures.append(PermanentDeliveryError("bot was kicked"))
    clock.advance(1)
    assert await worker.run_once() == 1
    replies = (await runtime.store.get_case(case_id)).replies
    assert [(r.text, r.status, r.error) for r in replies][-1] == (
        "again",
        ReplyStatus.FAILED,
        "bot was kicked",
    )


async def test_unexpected_errors_stop_after_max_attempts(runtime: Runtime) -> None:
    await _approved_reply(runtime)
    adapter = FakeAdapter()
    adapter.failures.extend(RuntimeError("bug") for _ in range(6))
    clock = Clock()
    worker = _worker(runtime, adapter, clock)
    for _ in range(4):
        await worker.run_once()
        clock.advance(700)
    statuses = [i.status for i in await runtime.store.outbox_items()]
    assert statuses == [OutboxStatus.FAILED, OutboxStatus.FAILED]


async def test_missing_adapter_keeps_the_row_pending(runtime: Runtime) -> None:
    await _approved_reply(runtime)
    worker = OutboxWorker(runtime.store, {}, SETTINGS, clock=Clock())
    assert await worker.run_once() == 2
    items = await runtime.store.outbox_items()
    assert [i.status for i in items] == [OutboxStatus.PENDING] * 2


async def test_private_reply_needs_a_platform_that_can_dm(runtime: Runtime) -> None:
    case_id = await _approved_reply(runtime, visibility=Visibility.PRIVATE)
    adapter = FakeAdapter(private=False)
    await _worker(runtime, adapter, Clock()).run_once()
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert reply.status is ReplyStatus.FAILED
    assert reply.error is not None and "private messages are not possible" in reply.error


async def test_private_reply_goes_to_the_author(runtime: Runtime) -> None:
    await _approved_reply(runtime, visibility=Visibility.PRIVATE)
    adapter = FakeAdapter()
    await _worker(runtime, adapter, Clock()).run_once()
    private = [m for m in adapter.sent if m.visibility is Visibility.PRIVATE]
    assert [m.recipient_id for m in private] == ["user-1"]


async def test_crash_mid_delivery_is_delivered_once_by_a_keyed_adapter(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A worker dies after the platform accepted the message but before marking it sent.

    The lease runs out, another worker retries under the same key, and the demo platform
    recognises the key: the person sees the reply exactly once.
    """
    demo = DemoAdapter(transcript_path=tmp_path / "t.jsonl", interval_seconds=3600)
    await demo.start(RecordingInbox())
    try:
        ref = demo.channels["gent"]
        await runtime.pipeline.opt_in(opt_in(ref))
        result = await runtime.pipeline.ingest(
            replace(message("xtc en alcohol?", "1"), channel=ref)
        )
        assert result is not None and result.case_id is not None
        user = await runtime.store.add_user("vol", "h", Role.VOLUNTEER)
        await runtime.store.approve_reply(
            result.case_id,
            text="Once only",
            visibility=Visibility.PUBLIC,
            written_by=user.id,
            approved_by=user.id,
        )
        clock = Clock()
        lease = timedelta(seconds=SETTINGS.lease_seconds)
        for delivery in await runtime.store.claim_deliveries(now=clock(), lease=lease):
            # The crashed worker got this far: the platform has it, the store does not know.
            from bot.models import OutgoingMessage

            await demo.send(
                OutgoingMessage(
                    key=f"outbox-{delivery.item.id}",
                    channel=delivery.channel,
                    text=delivery.item.text,
                    visibility=delivery.item.visibility,
                    reply_to_message_id=delivery.item.reply_to_message_id,
                )
            )
        worker = OutboxWorker(runtime.store, {"demo": demo}, SETTINGS, clock=clock)
        assert await worker.run_once() == 0  # still leased to the dead worker
        clock.advance(SETTINGS.lease_seconds + 1)
        assert await worker.run_once() == 2
        bot_lines = [line.text for line in demo.transcript() if line.from_bot]
        assert bot_lines.count("Once only") == 1
        assert all(i.status is OutboxStatus.SENT for i in await runtime.store.outbox_items())
    finally:
        await demo.stop()


async def test_run_stops_when_asked(runtime: Runtime) -> None:
    await _approved_reply(runtime)
    adapter = FakeAdapter()
    worker = OutboxWorker(runtime.store, {"fake": adapter}, SETTINGS)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if len(adapter.sent) == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(adapter.sent) == 2


# -- long texts in parts ---------------------------------------------------------------------

LONG = (
    "Neem niet te veel tegelijk. Wacht minstens twee uur voor je bijneemt. "
    "Drink water, maar niet meer dan een halve liter per uur.\n\n"
    "Alcohol en xtc samen drogen je extra uit. Zoek een rustige plek als je je niet goed voelt."
)


class SmallAdapter(FakeAdapter):
    """A platform that takes only short messages; ``fail_at`` maps the n-th send (from 1)
    to the exception it raises instead."""

    max_text_chars = 60

    def __init__(self, fail_at: dict[int, Exception] | None = None) -> None:
        super().__init__()
        self.fail_at = dict(fail_at or {})
        self.calls = 0

    async def send(self, message: OutgoingMessage) -> str:
        self.calls += 1
        if self.calls in self.fail_at:
            raise self.fail_at.pop(self.calls)
        return await super().send(message)


async def _reply_item(rt: Runtime, case_id: int) -> OutboxItem:
    (item,) = [i for i in await rt.store.outbox_items() if i.kind == "reply"]
    return item


async def _deliver_notices(rt: Runtime) -> None:
    """Send the opt-in notice first, so only the reply is left to the adapter under test."""
    await _worker(rt, FakeAdapter(), Clock()).run_once()


async def _long_reply(rt: Runtime, text: str = LONG) -> tuple[int, int]:
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message("is xtc met alcohol gevaarlijk?", "55"))
    assert result is not None and result.case_id is not None
    await _deliver_notices(rt)
    user = await rt.store.add_user("vol", "h", Role.VOLUNTEER)
    await rt.store.approve_reply(
        result.case_id,
        text=text,
        visibility=Visibility.PUBLIC,
        written_by=user.id,
        approved_by=user.id,
    )
    return result.case_id, (await _reply_item(rt, result.case_id)).id


async def test_a_long_reply_goes_out_in_parts_in_order(runtime: Runtime) -> None:
    case_id, outbox_id = await _long_reply(runtime)
    adapter = SmallAdapter()
    assert await _worker(runtime, adapter, Clock()).run_once() == 1
    expected = split_text(LONG, SmallAdapter.max_text_chars)
    assert len(expected) >= 3
    assert [m.text for m in adapter.sent] == expected
    assert all(units(m.text) <= SmallAdapter.max_text_chars for m in adapter.sent)
    assert " ".join(m.text for m in adapter.sent).split() == LONG.split()
    assert [m.key for m in adapter.sent] == [
        f"outbox-{outbox_id}-{n}" for n in range(1, len(expected) + 1)
    ]
    assert [m.reply_to_message_id for m in adapter.sent] == ["55"] + [None] * (len(expected) - 1)
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert (reply.status, reply.platform_message_id) == (ReplyStatus.SENT, "sent-1")
    item = await _reply_item(runtime, case_id)
    assert item.status is OutboxStatus.SENT
    assert item.part_ids == tuple(f"sent-{n}" for n in range(1, len(expected) + 1))


async def test_a_short_reply_keeps_its_single_key(runtime: Runtime) -> None:
    _, outbox_id = await _long_reply(runtime, text="Drink water.")
    adapter = SmallAdapter()
    await _worker(runtime, adapter, Clock()).run_once()
    assert [(m.key, m.text) for m in adapter.sent] == [(f"outbox-{outbox_id}", "Drink water.")]


async def test_a_retry_after_an_outage_sends_only_the_missing_parts(runtime: Runtime) -> None:
    case_id, outbox_id = await _long_reply(runtime)
    expected = split_text(LONG, SmallAdapter.max_text_chars)
    adapter = SmallAdapter(fail_at={2: PlatformUnavailable("down")})
    clock = Clock()
    worker = _worker(runtime, adapter, clock)
    assert await worker.run_once() == 1
    assert [m.text for m in adapter.sent] == expected[:1]
    item = await _reply_item(runtime, case_id)
    assert (item.status, item.part_ids) == (OutboxStatus.PENDING, ("sent-1",))
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert reply.status is ReplyStatus.QUEUED

    assert await worker.run_once() == 0  # backing off
    clock.advance(SETTINGS.retry_seconds + 1)
    assert await worker.run_once() == 1

    assert [m.text for m in adapter.sent] == expected  # each part exactly once, in order
    assert [m.key for m in adapter.sent] == [
        f"outbox-{outbox_id}-{n}" for n in range(1, len(expected) + 1)
    ]
    assert [m.reply_to_message_id for m in adapter.sent][1:] == [None] * (len(expected) - 1)
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert (reply.status, reply.platform_message_id) == (ReplyStatus.SENT, "sent-1")
    clock.advance(3600)
    assert await worker.run_once() == 0


async def test_the_text_is_escaped_before_it_is_split(runtime: Runtime) -> None:
    class EscapingAdapter(SmallAdapter):
        def escape(self, text: str) -> str:
            return text.replace("*", "\\*")

    # 51 characters: one part as written, two once every star is escaped (65).
    text = "*xtc* *en* *alcohol* *samen*: *nee*, *nooit* *doen*"
    assert units(text) <= EscapingAdapter.max_text_chars
    await _long_reply(runtime, text=text)
    adapter = EscapingAdapter()
    await _worker(runtime, adapter, Clock()).run_once()
    sent = [m.text for m in adapter.sent]
    assert len(sent) == 2
    assert all(units(part) <= EscapingAdapter.max_text_chars for part in sent)
    assert " ".join(sent) == text.replace("*", "\\*")
    assert not any(part.endswith("\\") for part in sent)


async def test_a_recipient_who_refuses_private_messages_fails_and_is_remembered(
    runtime: Runtime,
) -> None:
    case_id = await _approved_reply(runtime, visibility=Visibility.PRIVATE)
    author = runtime.pipeline.pseudonymize("fake", "user-1")
    assert await runtime.store.direct_ok(author) is None

    class BlockedAdapter(FakeAdapter):
        async def send(self, message: OutgoingMessage) -> str:
            if message.visibility is Visibility.PRIVATE:
                raise RecipientUnreachable("the person blocked the bot")
            return await super().send(message)

    adapter = BlockedAdapter()
    runtime.adapters["fake"] = adapter  # what the console asks before a private reply
    assert await _worker(runtime, adapter, Clock()).run_once() == 2
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert (reply.status, reply.error) == (ReplyStatus.FAILED, "the person blocked the bot")
    assert await runtime.store.direct_ok(author) is False
    assert [m.visibility for m in adapter.sent] == [Visibility.PUBLIC]  # the opt-in notice

    volunteer = await runtime.store.user_credentials("vol")
    assert volunteer is not None
    before = await runtime.store.outbox_items()
    with pytest.raises(ReplyRefused, match="no private message: this person refused"):
        await send_reply(
            runtime,
            case_id,
            user=volunteer[0],
            text="Mag ik je privé schrijven?",
            visibility=Visibility.PRIVATE,
        )
    assert await runtime.store.outbox_items() == before
    # In the channel is still possible.
    public = await send_reply(
        runtime, case_id, user=volunteer[0], text="Hier dan.", visibility=Visibility.PUBLIC
    )
    assert public.visibility is Visibility.PUBLIC

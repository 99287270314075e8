"""The Telegram adapter: the real python-telegram-bot against a fake Bot API on 127.0.0.1,
with the real pipeline, store and outbox behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import private_alerts
from bot.adapter import (
    PermanentDeliveryError,
    PlatformUnavailable,
    RateLimited,
    RecipientUnreachable,
)
from bot.models import CaseStatus, ChannelRef, OutgoingMessage, ReplyStatus, Role, Visibility
from bot.runtime import Runtime
from bot.settings import Secret, TelegramSettings
from bot.telegram_adapter import TelegramAdapter, TelegramStartError
from console.replies import ReplyRefused, send_reply
from tests.conftest import add_user
from tests.fake_telegram import (
    ANONYMOUS_ADMIN_ID,
    BOT_USERNAME,
    TOKEN,
    FakeBotAPI,
    Fault,
    SentMessage,
)

GROUP_ID = -1001234
ADMIN = FakeBotAPI.user(11, "Alex")
MEMBER = FakeBotAPI.user(22, "Robin")
DRUG_QUESTION = "is xtc met alcohol gevaarlijk?"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI()
    await server.start()
    server.members[(GROUP_ID, ADMIN["id"])] = "administrator"
    try:
        yield server
    finally:
        await server.stop()


def tg_settings(fake: FakeBotAPI, **overrides: Any) -> TelegramSettings:
    return replace(
        TelegramSettings(
            token=Secret(TOKEN),
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            poll_timeout=1,
            request_timeout=2.0,
        ),
        **overrides,
    )


@pytest.fixture
async def telegram(fake: FakeBotAPI, runtime: Runtime) -> AsyncIterator[TelegramAdapter]:
    """A polling adapter started on the real pipeline, registered for the outbox."""
    adapter = TelegramAdapter(tg_settings(fake))
    adapter.retry_seconds = 0.05
    await adapter.start(runtime.pipeline)
    runtime.adapters["telegram"] = adapter
    try:
        yield adapter
    finally:
        await adapter.stop()


async def until(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Wait until ``check()`` (sync or async) is truthy; return it."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def drained(fake: FakeBotAPI) -> None:
    """Wait until the adapter has fetched and confirmed every queued update."""
    await until(lambda: fake.pending_updates() == 0)


async def opted_in_group(fake: FakeBotAPI, runtime: Runtime) -> None:
    fake.say(FakeBotAPI.group(GROUP_ID), ADMIN, "/optin nl")
    await until(lambda: runtime.store.get_channel("telegram", str(GROUP_ID)))
    await runtime.outbox.run_once()  # the opt-in notice


async def only_case(runtime: Runtime) -> int:
    cases = await until(lambda: runtime.store.list_cases())
    assert len(cases) == 1
    return int(cases[0].id)


# -- starting -----------------------------------------------------------------------------


async def test_a_wrong_token_stops_startup_with_a_clear_error(
    fake: FakeBotAPI, runtime: Runtime
) -> None:
    adapter = TelegramAdapter(replace(tg_settings(fake), token=Secret("999:wrong")))
    with pytest.raises(TelegramStartError, match="refused the bot token") as raised:
        await adapter.start(runtime.pipeline)
    assert "999:wrong" not in str(raised.value)
    await adapter.stop()


async def test_webhook_mode_needs_a_public_url(fake: FakeBotAPI) -> None:
    with pytest.raises(TelegramStartError, match="webhook_url"):
        TelegramAdapter(tg_settings(fake, mode="webhook"))


async def test_telegram_down_at_start_is_retried_in_the_background(
    fake: FakeBotAPI, runtime: Runtime
) -> None:
    fake.fail("getMe", Fault("500"), Fault("502"))
    adapter = TelegramAdapter(tg_settings(fake))
    adapter.retry_seconds = 0.05
    await adapter.start(runtime.pipeline)  # does not raise
    try:
        await opted_in_group(fake, runtime)
        assert len(fake.calls_of("getMe")) == 3
        assert adapter.username == BOT_USERNAME
    finally:
        await adapter.stop()


# -- opt-in and watching ------------------------------------------------------------------


async def test_end_to_end_opt_in_flag_approve_deliver_once(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    channel = await runtime.store.get_channel("telegram", str(GROUP_ID))
    assert channel is not None and channel.opted_in and channel.language == "nl"
    (notice,) = fake.sent
    assert notice.chat_id == GROUP_ID and "peerdesk" in notice.text
    # The admin was checked with getChatMember at the moment of the command.
    assert fake.calls_of("getChatMember")[0].params["user_id"] in ("11", 11)

    asked = fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    case_id = await only_case(runtime)
    volunteer = await add_user(runtime, "vera", Role.VOLUNTEER)  # trained by default
    reply = await send_reply(
        runtime,
        case_id,
        user=volunteer,
        text="Samen nemen belast je lichaam dubbel.",
        visibility=Visibility.PUBLIC,
    )
    await runtime.outbox.run_once()
    await runtime.outbox.run_once()  # nothing left: nothing more is sent
    answers = [m for m in fake.sent if m.text.startswith("Samen nemen")]
    assert len(answers) == 1
    assert answers[0].chat_id == GROUP_ID and answers[0].reply_to == asked
    (stored,) = (await runtime.store.get_case(case_id)).replies
    assert stored.id == reply.id and stored.status is ReplyStatus.SENT
    assert stored.platform_message_id == str(answers[0].message_id)


async def test_a_member_who_is_not_admin_cannot_opt_in(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, "/optin")
    await until(lambda: fake.sent)
    assert "Only an admin" in fake.sent[0].text
    assert await runtime.store.get_channel("telegram", str(GROUP_ID)) is None


async def test_an_anonymous_admin_may_opt_in(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    group = FakeBotAPI.group(GROUP_ID)
    anonymous = FakeBotAPI.user(ANONYMOUS_ADMIN_ID, "Group")
    anonymous["is_bot"] = True
    fake.push("message", fake.message(group, anonymous, "/optin", sender_chat=group))
    channel = await until(lambda: runtime.store.get_channel("telegram", str(GROUP_ID)))
    assert channel.opted_in
    assert not fake.calls_of("getChatMember")


async def test_nothing_is_stored_from_a_group_that_did_not_opt_in(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, "/optin@some_other_bot")
    await drained(fake)
    await asyncio.sleep(0.1)
    assert await runtime.store.list_channels() == []
    assert await runtime.store.list_cases() == []
    assert fake.sent == []  # the other bot's command is not ours to answer


async def test_optout_stops_watching_and_purges(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    await only_case(runtime)
    fake.say(FakeBotAPI.group(GROUP_ID), ADMIN, "/optout")
    channel = await until(lambda: _opted_out(runtime))
    assert channel.consent_at is not None  # the consent record stays
    assert await runtime.store.list_cases() == []
    await runtime.outbox.run_once()
    assert "leest niet meer mee" in fake.sent[-1].text  # in the channel's language
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    await drained(fake)
    await asyncio.sleep(0.1)
    assert await runtime.store.list_cases() == []


async def _opted_out(runtime: Runtime) -> Any:
    channel = await runtime.store.get_channel("telegram", str(GROUP_ID))
    return channel if channel is not None and not channel.opted_in else None


async def test_removing_the_bot_from_a_group_opts_it_out(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    bot_user = {"id": 123456, "is_bot": True, "first_name": "peerdesk"}
    fake.push(
        "my_chat_member",
        {
            "chat": FakeBotAPI.group(GROUP_ID),
            "from": ADMIN,
            "date": 1_790_000_000,
            "old_chat_member": {"status": "member", "user": bot_user},
            "new_chat_member": {"status": "kicked", "user": bot_user, "until_date": 0},
        },
    )
    await until(lambda: _opted_out(runtime))
    sent_before = len(fake.sent)
    await runtime.outbox.run_once()
    assert len(fake.sent) == sent_before  # no goodbye to a group the bot is not in


async def test_a_group_that_becomes_a_supergroup_keeps_being_watched(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    new_id = -1009999
    fake.push(
        "message",
        fake.message(FakeBotAPI.group(GROUP_ID), ADMIN, None, migrate_to_chat_id=new_id),
    )
    await until(lambda: runtime.store.get_channel("telegram", str(new_id)))
    fake.say(FakeBotAPI.group(new_id), MEMBER, DRUG_QUESTION)
    await only_case(runtime)


# -- reliability of receiving -------------------------------------------------------------


class FlakyInbox:
    """The real pipeline, but the store is "down" for the first ``failures`` ingests."""

    def __init__(self, runtime: Runtime, failures: int) -> None:
        self.pipeline = runtime.pipeline
        self.failures = failures
        self.offsets_seen_while_down: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)

    async def ingest(self, message: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unreachable")
        return await self.pipeline.ingest(message)


async def test_the_offset_moves_only_after_the_message_is_stored(
    fake: FakeBotAPI, runtime: Runtime
) -> None:
    await runtime.pipeline.opt_in(
        _optin_request(ChannelRef("telegram", str(GROUP_ID), "Party people"))
    )
    inbox = FlakyInbox(runtime, failures=3)
    adapter = TelegramAdapter(tg_settings(fake))
    adapter.retry_seconds = 0.05
    await adapter.start(inbox)  # type: ignore[arg-type]
    try:
        update = fake.push(
            "message", fake.message(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
        )
        await only_case(runtime)
        # The offset moves once the handler returns (just after the case is visible).
        await until(lambda: adapter.offset == update["update_id"] + 1)
        assert inbox.failures == 0
        # While the store was down the update was never confirmed to Telegram.
        polls = fake.calls_of("getUpdates")
        confirming = [c for c in polls if int(c.params.get("offset") or 0) > update["update_id"]]
        first_confirm = polls.index(confirming[0]) if confirming else len(polls)
        fetched_again = [
            c
            for c in polls[:first_confirm]
            if int(c.params.get("offset") or 0) <= update["update_id"]
        ]
        assert len(fetched_again) >= 4  # the first fetch and three after the failures
    finally:
        await adapter.stop()
    assert fake.confirmed_offset == update["update_id"] + 1


async def test_a_redelivered_update_makes_no_second_message_or_case(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    msg = fake.message(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    fake.push("message", msg)
    fake.push("message", msg)  # Telegram sends it again (e.g. after a restart)
    await drained(fake)
    case_id = await only_case(runtime)
    detail = await runtime.store.get_case(case_id)
    assert [m.platform_message_id for m in detail.messages if m.case_id == case_id] == [
        str(msg["message_id"])
    ]


async def test_a_restart_continues_where_it_stopped(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    await only_case(runtime)
    await telegram.stop()
    # Said while peerdesk was down: Telegram keeps it until it is fetched.
    fake.say(
        FakeBotAPI.group(GROUP_ID), FakeBotAPI.user(33, "Kim"), "waar kan ik ghb laten testen?"
    )
    again = TelegramAdapter(tg_settings(fake))
    await again.start(runtime.pipeline)
    try:
        await until(lambda: _case_count(runtime, 2))
    finally:
        await again.stop()


async def _case_count(runtime: Runtime, n: int) -> bool:
    return len(await runtime.store.list_cases()) == n


async def test_an_edit_updates_the_stored_text(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    group = FakeBotAPI.group(GROUP_ID)
    msg = fake.message(group, MEMBER, "hoe gaat het met iedereen")
    fake.push("message", msg)
    await drained(fake)
    assert await runtime.store.list_cases() == []
    fake.push("edited_message", {**msg, "text": DRUG_QUESTION, "edit_date": 1_790_000_100})
    case_id = await only_case(runtime)
    (stored,) = [m for m in (await runtime.store.get_case(case_id)).messages]
    assert stored.text == DRUG_QUESTION and stored.edited_at is not None


async def test_a_sticker_in_a_group_is_not_stored(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    sticker = {"file_id": "x", "file_unique_id": "y", "width": 1, "height": 1}
    sticker.update(is_animated=False, is_video=False, type="regular")
    fake.push("message", fake.message(FakeBotAPI.group(GROUP_ID), MEMBER, None, sticker=sticker))
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    case_id = await only_case(runtime)
    assert len((await runtime.store.get_case(case_id)).messages) == 1


# -- direct questions ---------------------------------------------------------------------


async def test_a_private_question_opens_a_case_and_is_acknowledged(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    chat = FakeBotAPI.private(MEMBER)
    fake.say(chat, MEMBER, "Hoi, mag ik iets vragen over 3mmc?")
    case_id = await only_case(runtime)
    await runtime.outbox.run_once()
    (ack,) = fake.sent
    assert ack.chat_id == MEMBER["id"] and "112" in ack.text
    fake.say(chat, MEMBER, "Ik heb het gisteren voor het eerst genomen")
    await until(lambda: _messages_in_case(runtime, case_id, 2))
    await runtime.outbox.run_once()
    assert len(fake.sent) == 1  # one acknowledgement per conversation
    (case,) = await runtime.store.list_cases()
    assert case.channel_kind == "direct"


async def _messages_in_case(runtime: Runtime, case_id: int, n: int) -> bool:
    detail = await runtime.store.get_case(case_id)
    return len([m for m in detail.messages if m.case_id == case_id]) == n


async def test_a_voice_message_to_the_bot_is_not_lost(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    voice = {"file_id": "v", "file_unique_id": "v1", "duration": 3}
    fake.push("message", fake.message(FakeBotAPI.private(MEMBER), MEMBER, None, voice=voice))
    case_id = await only_case(runtime)
    (stored,) = (await runtime.store.get_case(case_id)).messages
    assert stored.text == "[voice message]"


async def test_private_reply_needs_the_person_to_have_started_the_bot(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    case_id = await only_case(runtime)
    (case,) = await runtime.store.list_cases()
    volunteer = await add_user(runtime, "vera", Role.COORDINATOR)
    with pytest.raises(ReplyRefused, match="never wrote to the bot privately"):
        await send_reply(
            runtime, case_id, user=volunteer, text="Hoi!", visibility=Visibility.PRIVATE
        )
    # Once they pressed Start in a private chat with the bot, a private answer to their
    # group question is possible (and /start alone opens no case).
    fake.say(FakeBotAPI.private(MEMBER), MEMBER, "/start")
    await until(lambda: runtime.store.direct_ok(case.author))
    assert len(await runtime.store.list_cases()) == 1
    await send_reply(runtime, case_id, user=volunteer, text="Hoi!", visibility=Visibility.PRIVATE)
    await runtime.outbox.run_once()
    assert [m.chat_id for m in fake.sent if m.text == "Hoi!"] == [MEMBER["id"]]


async def test_a_blocked_private_reply_fails_with_its_reason(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    fake.say(FakeBotAPI.private(MEMBER), MEMBER, "hoeveel ketamine is te veel?")
    case_id = await only_case(runtime)
    await runtime.outbox.run_once()  # the acknowledgement
    fake.started_bot.discard(MEMBER["id"])  # they blocked the bot since
    volunteer = await add_user(runtime, "vera", Role.COORDINATOR)
    await send_reply(runtime, case_id, user=volunteer, text="Hoi!", visibility=Visibility.PUBLIC)
    await runtime.outbox.run_once()
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert reply.status is ReplyStatus.FAILED
    assert reply.error is not None and "can't initiate conversation" in reply.error


VOLUNTEER = FakeBotAPI.user(33, "Vera")
URGENT = "mijn vriend wordt niet wakker na G, hij ademt raar"


async def test_a_linked_volunteer_on_duty_gets_urgent_alerts_privately(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    vera = await add_user(runtime, "vera")
    await runtime.store.set_on_duty(vera.id, True)
    code = await private_alerts.new_code(runtime.store, vera.id)
    chat = FakeBotAPI.private(VOLUNTEER)
    fake.say(chat, VOLUNTEER, f"/link {code.lower()}")  # as typed on a phone
    await until(lambda: [m for m in fake.sent if m.text.startswith("Linked to vera.")])
    assert await runtime.store.list_cases() == []  # /link is no question

    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, URGENT)
    case_id = await only_case(runtime)

    async def alerts_to_vera() -> list[SentMessage]:
        await runtime.outbox.run_once()  # (the alert is queued just after the case)
        return [
            m
            for m in fake.sent
            if m.chat_id == VOLUNTEER["id"] and m.text.startswith("peerdesk: urgent case")
        ]

    [alert] = await until(alerts_to_vera)
    assert f"urgent case {case_id} (Telegram)" in alert.text
    assert "wakker" not in alert.text and alert.reply_to is None

    # Vera blocks the bot: the next round's alert is refused, and the account is marked.
    fake.started_bot.discard(VOLUNTEER["id"])
    alerts = runtime.alerts
    assert alerts is not None
    [opened] = (await runtime.store.unclaimed_urgent_cases()).values()
    later = opened + timedelta(minutes=runtime.settings.console.alert_minutes, seconds=1)
    assert await alerts.alert(case_id, now=later) == 1
    runtime.outbox.clock = lambda: later
    await runtime.outbox.run_once()
    [link] = await private_alerts.links(runtime.store, vera.id)
    assert not link.reachable

    fake.say(chat, VOLUNTEER, "/unlink")
    await until(lambda: [m for m in fake.sent if m.text.startswith("Unlinked")])
    assert await private_alerts.links(runtime.store, vera.id) == []


async def test_a_link_code_sent_in_a_group_is_spent(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    vera = await add_user(runtime, "vera")
    code = await private_alerts.new_code(runtime.store, vera.id)
    fake.say(FakeBotAPI.group(GROUP_ID), VOLUNTEER, f"/link {code}")
    await until(lambda: [m for m in fake.sent if "not in a group" in m.text])
    fake.say(FakeBotAPI.private(VOLUNTEER), VOLUNTEER, f"/link {code}")
    await until(lambda: [m for m in fake.sent if m.text.startswith("This code is unknown")])
    assert await private_alerts.links(runtime.store, vera.id) == []


async def test_privacy_export_and_delete_in_a_private_chat(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    chat = FakeBotAPI.private(MEMBER)
    fake.say(chat, MEMBER, "mag ik vragen hoe je mdma test?")
    await only_case(runtime)
    fake.say(chat, MEMBER, "/privacy export")
    export = await until(lambda: [m for m in fake.sent if "keeps about you" in m.text])
    data = json.loads(export[0].text.split("\n", 1)[1])
    assert data["messages"][0]["text"] == "mag ik vragen hoe je mdma test?"
    fake.say(chat, MEMBER, "/privacy delete")
    await until(lambda: [m for m in fake.sent if m.text.startswith("Done: everything")])
    assert await runtime.store.list_cases(statuses=tuple(CaseStatus)) == []
    assert await runtime.store.list_channels() == []


async def test_privacy_export_asked_in_a_group_goes_to_a_private_chat(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, "/privacy export")
    refusal = await until(lambda: [m for m in fake.sent if "cannot write to you" in m.text])
    assert refusal[0].chat_id == GROUP_ID and f"https://t.me/{BOT_USERNAME}" in refusal[0].text


# -- sending ------------------------------------------------------------------------------


def outgoing(text: str = "Hallo", **kw: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "key": "k",
        "channel": ChannelRef("telegram", str(GROUP_ID), "Party people"),
        "text": text,
        "visibility": Visibility.PUBLIC,
        **kw,
    }
    return OutgoingMessage(**fields)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("429", retry_after=7), RateLimited),
        (Fault("500"), PlatformUnavailable),
        (Fault("502"), PlatformUnavailable),
        (Fault("hang", seconds=5), PlatformUnavailable),
        (Fault("drop"), PlatformUnavailable),
        (Fault("drop_after"), PlatformUnavailable),
    ],
)
async def test_transient_send_failures_are_retryable(
    fake: FakeBotAPI, telegram: TelegramAdapter, fault: Fault, error: type[Exception]
) -> None:
    fake.fail("sendMessage", fault)
    with pytest.raises(error) as raised:
        await telegram.send(outgoing())
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 7
    assert await telegram.send(outgoing()) != ""


async def test_permanent_send_failures_say_why(fake: FakeBotAPI, telegram: TelegramAdapter) -> None:
    fake.gone_chats.add(GROUP_ID)
    with pytest.raises(PermanentDeliveryError, match="no longer write in this group"):
        await telegram.send(outgoing())
    with pytest.raises(PermanentDeliveryError, match=r"(?i)chat not found"):
        await telegram.send(replace(outgoing(), channel=ChannelRef("telegram", "0", "gone")))
    with pytest.raises(RecipientUnreachable):
        await telegram.send(outgoing(visibility=Visibility.PRIVATE, recipient_id="777"))


async def test_mentions_are_defused_and_nothing_is_parsed_as_markup(
    fake: FakeBotAPI, telegram: TelegramAdapter
) -> None:
    text = telegram.escape("Hoi @everyone en @robin, <b>lees</b> *dit*")
    await telegram.send(outgoing(text))
    (sent,) = fake.sent
    assert "@everyone" not in sent.text and "@robin" not in sent.text
    assert sent.text.replace("\u2060", "") == "Hoi @everyone en @robin, <b>lees</b> *dit*"
    assert "parse_mode" not in sent.params


async def test_outbox_waits_out_a_rate_limit_then_delivers_once(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    case_id = await only_case(runtime)
    fake.fail("sendMessage", Fault("429", retry_after=1), Fault("500"))
    volunteer = await add_user(runtime, "vera", Role.COORDINATOR)
    await send_reply(runtime, case_id, user=volunteer, text="Veilig?", visibility=Visibility.PUBLIC)
    await runtime.outbox.run_once()  # 429: retry after 1 s
    (item,) = [i for i in await runtime.store.outbox_items() if i.reply_id is not None]
    assert item.status.value == "pending"
    await asyncio.sleep(1.05)
    await runtime.outbox.run_once()  # 500: retry (backoff 0 in tests)
    await runtime.outbox.run_once()  # delivered
    await runtime.outbox.run_once()
    assert [m.text for m in fake.sent].count("Veilig?") == 1


async def test_a_long_reply_is_split_at_sentences_and_only_the_first_part_replies(
    fake: FakeBotAPI, runtime: Runtime, telegram: TelegramAdapter
) -> None:
    await opted_in_group(fake, runtime)
    asked = fake.say(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION)
    case_id = await only_case(runtime)
    volunteer = await add_user(runtime, "vera", Role.COORDINATOR)
    text = " ".join(f"Zin nummer {i} gaat over veilig gebruik." for i in range(120))
    assert len(text) > 4096
    await runtime.store.approve_reply(
        case_id,
        text=text,
        visibility=Visibility.PUBLIC,
        written_by=volunteer.id,
        approved_by=volunteer.id,
    )
    await runtime.outbox.run_once()
    parts = [m for m in fake.sent if m.text.startswith("Zin nummer")]
    assert len(parts) == 2
    assert parts[0].reply_to == asked and parts[1].reply_to is None
    assert all(p.text.endswith(".") for p in parts)
    assert " ".join(p.text for p in parts) == text


# -- webhook mode -------------------------------------------------------------------------


async def test_webhook_mode_stores_an_update_once_and_refuses_strangers(
    fake: FakeBotAPI, runtime: Runtime, tmp_path: Path
) -> None:
    from console.app import create_app

    settings = tg_settings(
        fake, mode="webhook", webhook_url="https://desk.example.org", webhook_path="/tg/hook"
    )
    adapter = TelegramAdapter(settings, webhook_secret="s3cret-value")
    await adapter.start(runtime.pipeline)
    runtime.adapters["telegram"] = adapter
    try:
        assert fake.webhook is not None
        assert fake.webhook["url"] == "https://desk.example.org/tg/hook"
        assert fake.webhook["secret_token"] == "s3cret-value"
        await runtime.pipeline.opt_in(
            _optin_request(ChannelRef("telegram", str(GROUP_ID), "Party people"))
        )
        update = {
            "update_id": 1,
            "message": fake.message(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION),
        }
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
            body = json.dumps(update)
            no_secret = await c.post("/tg/hook", content=body)
            wrong = await c.post(
                "/tg/hook", content=body, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
            )
            good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-value"}
            malformed = await c.post("/tg/hook", content=b"{not json", headers=good)
            first = await c.post("/tg/hook", content=body, headers=good)
            again = await c.post("/tg/hook", content=body, headers=good)
        assert (no_secret.status_code, wrong.status_code) == (403, 403)
        assert malformed.status_code == 400
        assert (first.status_code, again.status_code) == (200, 200)
        assert len(await runtime.store.list_cases()) == 1
    finally:
        await adapter.stop()


async def test_webhook_answers_503_when_the_store_is_down_so_telegram_retries(
    fake: FakeBotAPI, runtime: Runtime
) -> None:
    settings = tg_settings(fake, mode="webhook", webhook_url="https://desk.example.org")
    adapter = TelegramAdapter(settings, webhook_secret="s3cret-value")
    inbox = FlakyInbox(runtime, failures=1)
    await adapter.start(inbox)  # type: ignore[arg-type]
    try:
        await runtime.pipeline.opt_in(
            _optin_request(ChannelRef("telegram", str(GROUP_ID), "Party people"))
        )
        body = json.dumps(
            {
                "update_id": 5,
                "message": fake.message(FakeBotAPI.group(GROUP_ID), MEMBER, DRUG_QUESTION),
            }
        ).encode()
        headers = {"x-telegram-bot-api-secret-token": "s3cret-value"}
        assert await adapter.receive_webhook(headers, body) == 503
        assert await runtime.store.list_cases() == []
        assert await adapter.receive_webhook(headers, body) == 200
        assert len(await runtime.store.list_cases()) == 1
    finally:
        await adapter.stop()


def _optin_request(ref: ChannelRef) -> Any:
    from tests.fakes import opt_in

    return opt_in(ref)


# -- the README's command, as a real process ----------------------------------------------


@pytest.mark.slow
async def test_peerdesk_run_with_only_a_token_serves_telegram(
    fake: FakeBotAPI, tmp_path: Path
) -> None:
    """`peerdesk run` with a token (and the fake server's address) and nothing else:
    opt-in, a flagged question, an answer approved through the API, delivered once."""
    import os
    import re
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    env.update(
        PEERDESK_TELEGRAM_TOKEN=TOKEN,
        PEERDESK_TELEGRAM_BASE_URL=fake.base_url,
        PEERDESK_TELEGRAM_POLL_TIMEOUT="1",
        PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE="lexical",
    )

    async def cli(*args: str, stdin: bytes = b"") -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args, cwd=tmp_path, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(stdin)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    await cli("init")
    await cli("user", "add", "vera", "--role", "coordinator", "--password-stdin",
              stdin=b"correct horse battery\n")  # fmt: skip
    token = (await cli("user", "token", "vera")).strip().split()[-1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", "--port", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        url = re.search(r"(http://\S+)", first)
        assert url, first
        group = FakeBotAPI.group(GROUP_ID)
        fake.say(group, ADMIN, "/optin nl")
        asked = fake.say(group, MEMBER, DRUG_QUESTION)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url.group(1), headers=headers) as api:
            health = (await api.get("/healthz")).json()
            assert health["platforms"] == {"telegram": "connected"}

            async def cases() -> list[Any]:
                found: list[Any] = (await api.get("/api/v1/cases")).json()["cases"]
                return found

            (case,) = await until(cases, within=30)
            sent = await api.post(
                f"/api/v1/cases/{case['id']}/replies",
                json={"text": "Samen nemen belast je lichaam dubbel.", "visibility": "public"},
                headers={"Idempotency-Key": "one"},
            )
            assert sent.status_code in (200, 201), sent.text
        answers = await until(lambda: [m for m in fake.sent if m.text.startswith("Samen")], 30)
        await asyncio.sleep(1)
        assert len([m for m in fake.sent if m.text.startswith("Samen")]) == 1
        assert answers[0].reply_to == asked
        assert any("peerdesk" in m.text for m in fake.sent if m.chat_id == GROUP_ID)
    finally:
        process.send_signal(2)  # SIGINT, as Ctrl-C
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert TOKEN not in err.decode()  # the token never reaches the logs

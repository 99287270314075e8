"""The Discord adapter with the real discord.py: events through dpytest, the gateway and
login through a fake Discord on 127.0.0.1, and the real pipeline end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import discord
import discord.ext.test as dpytest
import pytest
import sqlalchemy as sa
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer
from discord.ext.test import backend, factories

from bot import private_alerts, schema
from bot.adapter import (
    Inbox,
    PermanentDeliveryError,
    PlatformUnavailable,
    RateLimited,
    RecipientUnreachable,
)
from bot.discord_adapter import (
    ANSWERS,
    PRIVATE_REFUSAL,
    DiscordAdapter,
    DiscordStartError,
    build_client,
    intents,
    nonce,
)
from bot.models import (
    CaseStatus,
    ChannelRef,
    IncomingMessage,
    MessageDeletion,
    MessageEdit,
    OptIn,
    OptOut,
    OutboxStatus,
    OutgoingMessage,
    Role,
    Visibility,
)
from bot.pipeline import IngestResult
from bot.runtime import Runtime
from bot.settings import LANGUAGES, DiscordSettings, Secret

DRUG_QUESTION = "hoeveel mdma is veilig voor een eerste keer?"
WAIT = 5.0


# -- a recording inbox ----------------------------------------------------------------------


@dataclass
class Recorder:
    """The whole Inbox protocol, recording what the adapter hands over. ``failures`` are
    raised by the next ingests; ``watched`` is what watched_channels answers."""

    messages: list[IncomingMessage] = field(default_factory=list)
    opt_ins: list[OptIn] = field(default_factory=list)
    reachables: list[tuple[str, str]] = field(default_factory=list)
    opt_outs: list[OptOut] = field(default_factory=list)
    edits: list[MessageEdit] = field(default_factory=list)
    deletions: list[MessageDeletion] = field(default_factory=list)
    moves: list[tuple[str, str, str]] = field(default_factory=list)
    exported: list[tuple[str, str]] = field(default_factory=list)
    erased: list[tuple[str, str]] = field(default_factory=list)
    watched: list[tuple[ChannelRef, str | None]] = field(default_factory=list)
    watched_calls: int = 0
    failures: deque[Exception] = field(default_factory=deque)  # for the next ingests
    delete_failures: deque[Exception] = field(default_factory=deque)
    changes: bool = True
    links: list[tuple[str, str, str, bool]] = field(default_factory=list)

    async def ingest(self, message: IncomingMessage) -> IngestResult | None:
        if self.failures:
            raise self.failures.popleft()
        self.messages.append(message)
        return None

    async def opt_in(self, request: OptIn) -> bool:
        self.opt_ins.append(request)
        return self.changes

    async def opt_out(self, request: OptOut) -> bool:
        self.opt_outs.append(request)
        return self.changes

    async def edit(self, edit: MessageEdit) -> bool:
        self.edits.append(edit)
        return True

    async def delete(self, deletion: MessageDeletion) -> bool:
        if self.delete_failures:
            raise self.delete_failures.popleft()
        self.deletions.append(deletion)
        return True

    async def move_channel(self, platform: str, old_chat_id: str, new_chat_id: str) -> None:
        self.moves.append((platform, old_chat_id, new_chat_id))

    async def reachable(self, platform: str, user_id: str) -> None:
        self.reachables.append((platform, user_id))

    async def export_person(self, platform: str, user_id: str) -> dict[str, Any]:
        self.exported.append((platform, user_id))
        return {"pseudonym": "p-1", "messages": [{"text": "hé, *mijn* bericht"}]}

    async def erase_person(self, platform: str, user_id: str) -> dict[str, int]:
        self.erased.append((platform, user_id))
        return {"messages": 3, "cases": 1, "direct_chats": 0}

    async def watched_channels(self, platform: str) -> list[tuple[ChannelRef, str | None]]:
        self.watched_calls += 1
        return list(self.watched)

    async def link_account(
        self, platform: str, user_id: str, code: str, *, private: bool = True
    ) -> str:
        self.links.append((platform, user_id, code, private))
        return f"linked {code}"

    async def unlink_account(self, platform: str, user_id: str) -> str:
        self.links.append((platform, user_id, "", False))
        return "unlinked"

    def text(self, name: str, language: str | None, **context: Any) -> str:
        return f"{name}/{language}"


def test_the_recorder_covers_the_whole_inbox() -> None:
    assert {name for name in vars(Inbox) if not name.startswith("_")} <= set(dir(Recorder))


# -- dpytest --------------------------------------------------------------------------------


@dataclass
class World:
    client: discord.Client
    guild: discord.Guild
    general: discord.TextChannel
    random: discord.TextChannel
    ann: discord.Member  # has Manage Server
    bob: discord.Member


def discord_history(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """dpytest's history ``after`` an id includes that message and fails on an id it does
    not know; Discord's excludes it, accepts any snowflake and answers newest first."""

    async def logs_from(
        channel_id: int,
        limit: int,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
    ) -> Any:
        if after is None or before is not None or around is not None:
            return await original(channel_id, limit, before=before, after=after, around=around)
        stored = backend._cur_config.messages.get(channel_id, [])
        newer = sorted((m for m in stored if int(m["id"]) > after), key=lambda m: int(m["id"]))
        return list(reversed(newer[:limit]))

    return logs_from


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """A dpytest Discord: one server with #general and #random, admin Ann and member Bob."""
    wanted = intents()
    wanted.members = True  # dpytest keeps members in the cache only with this intent
    client = discord.Client(intents=wanted)
    await client._async_setup_hook()
    dpytest.configure(
        client,
        guilds=["Club"],
        text_channels=["general", "random"],
        voice_channels=0,
        members=["Ann", "Bob"],
    )
    config = dpytest.get_config()
    guild = config.guilds[0]
    general, random = config.channels
    ann, bob = config.members
    monkeypatch.setattr(client.http, "logs_from", discord_history(client.http.logs_from))
    role = backend.make_role(
        "Admins", guild, permissions=discord.Permissions(manage_guild=True).value
    )
    await dpytest.add_role(ann, role)
    try:
        yield World(client, guild, general, random, ann, bob)
    finally:
        await dpytest.empty_queue()
        client.ws = None  # dpytest's websocket has no socket for Client.close to check
        await client.close()


def assert_no_tasks_left() -> None:
    """No task outlives the adapters, except the runtime's event relay (``case-events``),
    which the runtime fixture stops after this one is torn down."""
    current = asyncio.current_task()
    left = [
        t
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and not t.get_name().startswith("case-events")
    ]
    assert left == []


@pytest.fixture
async def make_adapter(world: World) -> AsyncIterator[Callable[..., DiscordAdapter]]:
    """Adapters on the dpytest client, stopped afterwards; no task may outlive a test."""
    made: list[DiscordAdapter] = []

    def make(*, settings: DiscordSettings | None = None) -> DiscordAdapter:
        adapter = DiscordAdapter(
            settings or DiscordSettings(),
            client=world.client,
            sync_commands=False,
            retry_seconds=0.01,
        )
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.stop()
    await dpytest.run_all_events()
    assert_no_tasks_left()


@pytest.fixture
async def attached(
    make_adapter: Callable[..., DiscordAdapter],
) -> tuple[DiscordAdapter, Recorder]:
    adapter, inbox = make_adapter(), Recorder()
    adapter.attach(inbox)
    return adapter, inbox


def raw_message(
    channel: discord.abc.Messageable, author: discord.abc.User, content: str, **extra: Any
) -> dict[str, Any]:
    """Post a message the way the gateway would, with fields dpytest cannot set itself."""
    data: dict[str, Any] = factories.make_message_dict(channel, author, content=content)
    data.update(extra)
    backend.get_state().parse_message_create(data)
    backend._cur_config.messages.setdefault(data["channel_id"], []).append(data)
    return data


def stored_payload(message: discord.Message) -> dict[str, Any]:
    found: dict[str, Any] = next(
        d for d in backend._cur_config.messages[message.channel.id] if d["id"] == message.id
    )
    return found


async def edit(message: discord.Message, content: str) -> None:
    """The author edits a message: Discord sends MESSAGE_UPDATE."""
    data = dict(stored_payload(message), content=content)
    data.pop("member", None)  # dpytest's member payload lacks the roles an update needs
    data["edited_timestamp"] = discord.utils.utcnow().isoformat()
    backend.get_state().parse_message_update(data)
    await dpytest.run_all_events()


def record_sends(monkeypatch: pytest.MonkeyPatch, client: discord.Client) -> list[dict[str, Any]]:
    """Keep the payload of every message the bot sends (dpytest drops the reply reference
    and the allowed mentions)."""
    payloads: list[dict[str, Any]] = []
    original = client.http.send_message

    async def send_message(channel_id: int, *, params: Any) -> Any:
        # dpytest's fake HTTP reads ``channel`` from its caller's frame.
        channel = sys._getframe(1).f_locals["channel"]
        payloads.append(dict(params.payload, channel=channel.id))
        return await original(channel_id, params=params)

    monkeypatch.setattr(client.http, "send_message", send_message)
    return payloads


def fail_sends(monkeypatch: pytest.MonkeyPatch, client: discord.Client, exc: Exception) -> None:
    async def send_message(channel_id: int, *, params: Any) -> Any:
        raise exc

    monkeypatch.setattr(client.http, "send_message", send_message)


@dataclass
class Response:
    """What discord's HTTP exceptions read from an aiohttp response."""

    status: int
    reason: str


def http_error(kind: type[discord.HTTPException], status: int, code: int) -> Exception:
    return kind(Response(status, "error"), {"code": code, "message": f"error {code}"})


def outgoing(
    chat: discord.abc.Snowflake,
    text: str = "Een antwoord.",
    *,
    key: str = "outbox-1",
    kind: str = "group",
    server: discord.Guild | None = None,
    visibility: Visibility = Visibility.PUBLIC,
    reply_to: str | None = None,
    recipient: str | None = None,
) -> OutgoingMessage:
    chat_id = f"server:{chat.id}" if kind == "server" else str(chat.id)
    return OutgoingMessage(
        key=key,
        channel=ChannelRef(
            platform="discord",
            chat_id=chat_id,
            title="t",
            kind=kind,
            server_id=str(server.id) if server else None,
        ),
        text=text,
        visibility=visibility,
        reply_to_message_id=reply_to,
        recipient_id=recipient,
    )


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 (polls the adapter's own retry)
            await asyncio.sleep(0.01)


# -- watching ---------------------------------------------------------------------------------


async def test_a_guild_message_is_handed_over_with_its_channel_and_reply(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    _, inbox = attached
    first = await dpytest.message("is xtc met alcohol gevaarlijk?", world.general, world.bob)
    raw_message(
        world.general,
        world.ann,
        "drink water",
        type=19,
        message_reference={"message_id": str(first.id), "channel_id": str(world.general.id)},
    )
    await dpytest.run_all_events()

    channel = ChannelRef(
        platform="discord",
        chat_id=str(world.general.id),
        title="Club #general",
        kind="group",
        server_id=str(world.guild.id),
    )
    assert inbox.messages[0] == IncomingMessage(
        channel=channel,
        message_id=str(first.id),
        author_id=str(world.bob.id),
        author_name=world.bob.display_name,
        text="is xtc met alcohol gevaarlijk?",
        sent_at=first.created_at,
    )
    reply = inbox.messages[1]
    assert (reply.text, reply.reply_to_message_id) == ("drink water", str(first.id))
    assert reply.author_id == str(world.ann.id)


async def test_bots_system_messages_and_empty_messages_are_not_handed_over(
    world: World, attached: tuple[DiscordAdapter, Recorder], tmp_path: Path
) -> None:
    _, inbox = attached
    await world.general.send("the bot itself speaking")
    raw_message(world.general, world.bob, "", type=7)  # "Bob joined the server"
    raw_message(world.general, world.bob, "")  # a sticker: no text
    picture = tmp_path / "pil.jpg"
    picture.write_bytes(b"jpg")
    await dpytest.message("wat is dit?", world.general, world.bob, attachments=[str(picture)])
    await dpytest.run_all_events()

    assert [m.text for m in inbox.messages] == ["wat is dit?\n[attachment: pil.jpg]"]


async def test_a_direct_message_is_handed_over_as_a_direct_chat(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    _, inbox = attached
    dm = await world.bob.create_dm()
    await dpytest.message("kan ik je iets vragen?", dm, world.bob)

    (got,) = inbox.messages
    assert got.channel == ChannelRef(
        platform="discord",
        chat_id=str(dm.id),
        title="DM Bob",
        kind="direct",
    )
    assert (got.author_id, got.text) == (str(world.bob.id), "kan ik je iets vragen?")


async def test_edits_and_deletions_are_handed_over(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    _, inbox = attached
    first = await dpytest.message("eerst", world.general, world.bob)
    await edit(first, "eerst, maar anders")
    await edit(first, "eerst, maar anders")  # a link preview arrived: the text is the same
    backend.delete_message(first)
    backend.get_state().parse_message_delete_bulk(
        {"ids": ["12", "11"], "channel_id": str(world.general.id), "guild_id": str(world.guild.id)}
    )
    await dpytest.run_all_events()

    chat = str(world.general.id)
    assert [(e.channel.chat_id, e.message_id, e.text) for e in inbox.edits] == [
        (chat, str(first.id), "eerst, maar anders")
    ]
    assert [(d.channel.chat_id, d.message_id) for d in inbox.deletions] == [
        (chat, str(first.id)),
        (chat, "11"),
        (chat, "12"),
    ]


async def test_a_message_the_inbox_could_not_take_is_read_again_from_the_history(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    _, inbox = attached
    inbox.failures.append(RuntimeError("database down"))
    lost = await dpytest.message("was de database weg?", world.general, world.bob)

    await eventually(lambda: bool(inbox.messages))
    assert [m.message_id for m in inbox.messages] == [str(lost.id)]


async def test_a_deletion_the_inbox_could_not_take_is_handed_over_again(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    _, inbox = attached
    inbox.delete_failures.append(RuntimeError("database down"))
    gone = await dpytest.message("weg ermee", world.general, world.bob)
    backend.delete_message(gone)
    await dpytest.run_all_events()

    await eventually(lambda: bool(inbox.deletions))
    assert [d.message_id for d in inbox.deletions] == [str(gone.id)]


async def test_catch_up_reads_after_the_newest_stored_message(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, inbox = attached
    backend.get_state().stop_dispatch()  # the bot is away
    stored = await dpytest.message("al opgeslagen", world.general, world.bob)
    missed = [await dpytest.message(f"gemist {n}", world.general, world.bob) for n in range(3)]
    await world.general.send("the bot's own notice")
    await dpytest.message("nooit opgeslagen kanaal", world.random, world.bob)
    backend.get_state().start_dispatch()
    general = adapter.channel_ref(world.general)
    random = adapter.channel_ref(world.random)
    assert general is not None and random is not None
    # #random has nothing stored: what it said before consent is not read.
    inbox.watched = [(general, str(stored.id)), (random, None)]

    assert await adapter.catch_up() == 3
    assert [m.message_id for m in inbox.messages] == [str(m.id) for m in missed]


# -- slash commands ---------------------------------------------------------------------------


async def test_the_slash_commands_are_registered_with_their_options(
    attached: tuple[DiscordAdapter, Recorder],
) -> None:
    adapter, _ = attached
    commands = {c.name: c for c in adapter.tree.get_commands()}
    assert sorted(commands) == ["link", "optin", "optout", "privacy", "unlink"]

    def options(name: str) -> list[tuple[str, bool, list[str | int | float]]]:
        command = commands[name]
        assert isinstance(command, discord.app_commands.Command)
        return [(p.name, p.required, [c.value for c in p.choices]) for p in command.parameters]

    assert options("optin") == [
        ("scope", True, ["channel", "server"]),
        ("language", False, ["nl", "fr", "en"]),
    ]
    assert options("optout") == [("scope", True, ["channel", "server"])]
    assert options("privacy") == [("action", True, ["info", "export", "delete"])]
    assert options("link") == [("code", True, [])]
    assert options("unlink") == []


async def test_an_admin_opts_a_channel_and_a_server_in_and_out(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, inbox = attached

    answer = await adapter.opt_in_command(world.ann, world.general, "channel", "fr")
    assert answer == ANSWERS["optin_channel"]
    assert (
        await adapter.opt_in_command(world.ann, world.general, "server") == ANSWERS["optin_server"]
    )
    assert (
        await adapter.opt_out_command(world.ann, world.general, "channel")
        == ANSWERS["optout_channel"]
    )

    channel, server = (o.channel for o in inbox.opt_ins)
    assert channel == ChannelRef(
        platform="discord",
        chat_id=str(world.general.id),
        title="Club #general",
        kind="group",
        language="fr",
        server_id=str(world.guild.id),
    )
    assert server == ChannelRef(
        platform="discord",
        chat_id=f"server:{world.guild.id}",
        title="Club",
        kind="server",
        server_id=str(world.guild.id),
    )
    assert [(o.admin_id, o.admin_name) for o in inbox.opt_ins] == [
        (str(world.ann.id), world.ann.display_name)
    ] * 2
    assert [(o.channel.chat_id, o.admin_id) for o in inbox.opt_outs] == [
        (str(world.general.id), str(world.ann.id))
    ]

    inbox.changes = False
    assert await adapter.opt_in_command(world.ann, world.general) == ANSWERS["already_channel"]
    assert (
        await adapter.opt_out_command(world.ann, world.general, "server")
        == ANSWERS["not_watching_server"]
    )


async def test_a_member_without_manage_server_is_refused(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, inbox = attached
    assert await adapter.opt_in_command(world.bob, world.general, "server") == ANSWERS["not_admin"]
    assert await adapter.opt_out_command(world.bob, world.general) == ANSWERS["not_admin"]
    assert (inbox.opt_ins, inbox.opt_outs) == ([], [])


async def test_privacy_info_export_and_delete(
    world: World,
    attached: tuple[DiscordAdapter, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    adapter, inbox = attached
    monkeypatch.chdir(tmp_path)  # dpytest writes uploaded files to the working directory

    assert await adapter.privacy_command(world.bob, "info", "nl") == "privacy_notice/nl"
    assert await adapter.privacy_command(world.bob, "export") == ANSWERS["export_sent"]
    sent = dpytest.get_message()
    # (dpytest drops the text of a message that carries a file)
    assert sent.channel == world.bob.dm_channel
    (attachment,) = sent.attachments
    exported = json.loads(Path(yarl.URL(attachment.url).path).read_text(encoding="utf-8"))
    assert exported == {"pseudonym": "p-1", "messages": [{"text": "hé, *mijn* bericht"}]}

    answer = await adapter.privacy_command(world.bob, "delete")
    assert answer == ANSWERS["erased"].format(counts="3 messages, 1 cases, 0 direct chats")
    assert inbox.exported == inbox.erased == [("discord", str(world.bob.id))]


async def test_privacy_export_says_so_when_the_person_refuses_direct_messages(
    world: World, attached: tuple[DiscordAdapter, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter, _ = attached
    fail_sends(monkeypatch, world.client, http_error(discord.Forbidden, 403, 50007))
    assert await adapter.privacy_command(world.bob, "export") == ANSWERS["export_no_dm"]


async def test_link_and_unlink_name_the_persons_own_account(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, inbox = attached
    assert await adapter.link_command(world.bob, "ABCD-EFGH") == "linked ABCD-EFGH"
    assert await adapter.unlink_command(world.bob) == "unlinked"
    bob = str(world.bob.id)
    # The answer is ephemeral: a code typed in a server channel is seen by nobody else.
    assert inbox.links == [("discord", bob, "ABCD-EFGH", True), ("discord", bob, "", False)]


# -- sending ----------------------------------------------------------------------------------


async def test_a_public_reply_answers_the_message_with_a_nonce_and_no_mentions(
    world: World, attached: tuple[DiscordAdapter, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter, _ = attached
    question = await dpytest.message("vraag", world.general, world.bob)
    payloads = record_sends(monkeypatch, world.client)
    message = outgoing(world.general, "Drink water.", reply_to=str(question.id))

    platform_id = await adapter.send(message)

    sent = dpytest.get_message()
    assert (platform_id, sent.content, sent.channel) == (
        str(sent.id),
        "Drink water.",
        world.general,
    )
    (payload,) = payloads
    assert payload["message_reference"]["message_id"] == question.id
    assert payload["message_reference"]["fail_if_not_exists"] is False
    assert payload["allowed_mentions"] == {"parse": []}  # replied_user is off by default
    assert (payload["nonce"], payload["enforce_nonce"]) == (nonce(message), True)
    assert len(payload["nonce"]) <= 25
    # The same delivery again gets the same nonce (Discord then returns the first
    # message); another key or another text gets another nonce.
    assert nonce(message) == nonce(outgoing(world.general, "Drink water.", reply_to="9"))
    assert nonce(message) != nonce(outgoing(world.general, "Drink water.", key="outbox-2"))
    assert nonce(message) != nonce(outgoing(world.general, "Drink meer water."))


async def test_a_private_reply_goes_to_the_person_by_direct_message(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, _ = attached
    message = outgoing(
        world.general,
        "Privé antwoord",
        visibility=Visibility.PRIVATE,
        recipient=str(world.bob.id),
        reply_to="1",
    )
    await adapter.send(message)

    sent = dpytest.get_message()
    assert (sent.channel, sent.content) == (world.bob.dm_channel, "Privé antwoord")


async def test_a_server_notice_goes_to_the_first_channel_the_bot_may_write_in(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, _ = attached
    await adapter.send(outgoing(world.guild, "Hallo server", kind="server", server=world.guild))
    assert dpytest.get_message().channel == world.general

    everyone = world.guild.default_role
    backend.update_role(everyone, permissions=everyone.permissions.value & ~(1 << 11))
    with pytest.raises(PermanentDeliveryError, match="Send Messages"):
        await adapter.send(outgoing(world.guild, "Hallo", kind="server", server=world.guild))


async def test_a_channel_the_bot_may_not_post_in_fails_for_good(
    world: World, attached: tuple[DiscordAdapter, Recorder]
) -> None:
    adapter, _ = attached
    everyone = world.guild.default_role
    backend.update_role(everyone, permissions=everyone.permissions.value & ~(1 << 11))
    with pytest.raises(PermanentDeliveryError) as caught:
        await adapter.send(outgoing(world.general))
    assert not isinstance(caught.value, RecipientUnreachable)


@pytest.mark.parametrize(
    ("error", "expected", "reason"),
    [
        (http_error(discord.Forbidden, 403, 50013), PermanentDeliveryError, "permission"),
        (http_error(discord.Forbidden, 403, 50001), PermanentDeliveryError, "no access"),
        (http_error(discord.NotFound, 404, 10003), PermanentDeliveryError, "no longer exists"),
        (http_error(discord.HTTPException, 400, 50035), PermanentDeliveryError, "refused"),
        (http_error(discord.DiscordServerError, 503, 0), PlatformUnavailable, "503"),
        (aiohttp.ClientConnectionError("reset"), PlatformUnavailable, "cannot be reached"),
        (TimeoutError(), PlatformUnavailable, "cannot be reached"),
    ],
)
async def test_send_errors_are_mapped_for_the_outbox(
    world: World,
    attached: tuple[DiscordAdapter, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    expected: type[Exception],
    reason: str,
) -> None:
    adapter, _ = attached
    fail_sends(monkeypatch, world.client, error)
    with pytest.raises(expected, match=reason) as caught:
        await adapter.send(outgoing(world.general))
    assert not isinstance(caught.value, RateLimited | RecipientUnreachable)


async def test_a_long_rate_limit_becomes_rate_limited_with_its_wait(
    world: World, attached: tuple[DiscordAdapter, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter, _ = attached
    fail_sends(monkeypatch, world.client, discord.RateLimited(90.0))
    with pytest.raises(RateLimited) as caught:
        await adapter.send(outgoing(world.general))
    assert caught.value.retry_after == 90.0


async def test_a_refused_direct_message_means_the_recipient_is_unreachable(
    world: World, attached: tuple[DiscordAdapter, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter, _ = attached
    fail_sends(monkeypatch, world.client, http_error(discord.Forbidden, 403, 50007))
    message = outgoing(world.general, visibility=Visibility.PRIVATE, recipient=str(world.bob.id))
    with pytest.raises(RecipientUnreachable, match=PRIVATE_REFUSAL):
        await adapter.send(message)


async def test_sending_before_start_is_a_platform_outage(world: World) -> None:
    adapter = DiscordAdapter(DiscordSettings(), client=world.client)
    with pytest.raises(PlatformUnavailable):
        await adapter.send(outgoing(world.general))


def test_escape_leaves_no_markup_and_no_mass_mention() -> None:
    adapter = DiscordAdapter(DiscordSettings())
    escaped = adapter.escape("@everyone @here <@123456789012345678> **vet** _schuin_ `code`")
    assert "@everyone" not in escaped and "@here" not in escaped
    assert "<@123456789012345678>" not in escaped
    assert "\\*\\*vet\\*\\*" in escaped and "\\_schuin\\_" in escaped and "\\`code\\`" in escaped


def test_private_messages_are_refused_only_when_discord_refused_them() -> None:
    adapter = DiscordAdapter(DiscordSettings())
    assert adapter.private_refusal(None) is None
    assert adapter.private_refusal(True) is None
    assert adapter.private_refusal(False) == PRIVATE_REFUSAL


# -- settings and the connection ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "ids", "message"),
    [
        (2, (0, 2), r"shard_ids \[2\] do not exist"),
        (0, (0,), "shard_count is 0"),
        (3, (1, 1), "twice"),
    ],
)
def test_shard_ids_must_fit_the_shard_count(count: int, ids: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiscordAdapter(DiscordSettings(shard_count=count, shard_ids=ids))


def test_the_client_is_sharded_only_when_asked() -> None:
    plain = build_client(DiscordSettings())
    sharded = build_client(DiscordSettings(shard_count=4, shard_ids=(1, 3)))
    assert type(plain) is discord.Client
    assert isinstance(sharded, discord.AutoShardedClient)
    assert (sharded.shard_count, sharded.shard_ids) == (4, [1, 3])
    assert plain.intents == intents()
    assert (intents().message_content, intents().members) == (True, False)


TOKEN = "MTIz.fake.token-value"
APP_ID = "1000000000000000001"
BOT_USER = {
    "id": "1000000000000000002",
    "username": "peerdesk",
    "discriminator": "0",
    "avatar": None,
    "bot": True,
}


def api(data: Any, *, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only for exactly this content type.
    body = json.dumps(data).encode("utf-8")
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json"})


class FakeDiscord:
    """Discord's REST API and gateway, as much as logging in and connecting needs."""

    def __init__(self, *, close_code: int | None = None) -> None:
        self.close_code = close_code  # close the gateway with this code at IDENTIFY
        self.identified = 0
        self.resumed = 0
        self.commands: list[dict[str, Any]] | None = None
        self.sockets: list[web.WebSocketResponse] = []
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self.me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self.application)
        app.router.add_put(f"/api/v10/applications/{APP_ID}/commands", self.put_commands)
        app.router.add_get("/gateway", self.gateway)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def gateway_url(self) -> str:
        return str(self.server.make_url("/gateway")).replace("http://", "ws://")

    async def me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {TOKEN}":
            return api({"message": "401: Unauthorized", "code": 0}, status=401)
        return api(BOT_USER)

    async def application(self, request: web.Request) -> web.Response:
        return api(
            {
                "id": APP_ID,
                "name": "peerdesk",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": BOT_USER,
                "verify_key": "k",
                "flags": 0,
            }
        )

    async def put_commands(self, request: web.Request) -> web.Response:
        self.commands = await request.json()
        return api([])

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 45000}})
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                break
            op = json.loads(frame.data)["op"]
            if op == 1:
                await ws.send_json({"op": 11})
            elif op == 2 and self.close_code is not None:
                await ws.close(code=self.close_code)
            elif op == 2:
                self.identified += 1
                ready = {
                    "v": 10,
                    "user": BOT_USER,
                    "guilds": [],
                    "session_id": "session-1",
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": APP_ID, "flags": 0},
                }
                await ws.send_json({"op": 0, "t": "READY", "s": 1, "d": ready})
            elif op == 6:
                self.resumed += 1
                await ws.send_json({"op": 0, "t": "RESUMED", "s": 2, "d": {}})
        return ws

    async def reconnect(self) -> None:
        """Ask the client to reconnect and resume, as Discord does now and then."""
        await self.sockets[-1].send_json({"op": 7, "d": None})


@pytest.fixture
async def fake_discord(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Awaitable[FakeDiscord]]]:
    servers: list[FakeDiscord] = []

    async def start(**options: Any) -> FakeDiscord:
        fake = FakeDiscord(**options)
        await fake.server.start_server()
        base = str(fake.server.make_url("/api/v10"))
        monkeypatch.setattr(discord.http.Route, "BASE", base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
        )
        servers.append(fake)
        return fake

    yield start
    for fake in servers:
        await fake.server.close()
    assert_no_tasks_left()


def gateway_adapter(token: str = TOKEN, **options: Any) -> DiscordAdapter:
    # A short guild wait: the fake READY lists no servers, and Discord's default is 2 s.
    client = discord.Client(intents=intents(), guild_ready_timeout=0.01)
    return DiscordAdapter(
        DiscordSettings(token=Secret(token)), client=client, ready_timeout=WAIT, **options
    )


async def test_start_logs_in_registers_commands_and_catches_up_on_ready_and_resume(
    fake_discord: Callable[..., Awaitable[FakeDiscord]],
) -> None:
    fake = await fake_discord()
    adapter, inbox = gateway_adapter(), Recorder()
    await adapter.start(inbox)
    try:
        assert adapter.client is not None and adapter.client.is_ready()
        assert adapter.state() == "connected"
        assert sorted(c["name"] for c in fake.commands or []) == [
            "link",
            "optin",
            "optout",
            "privacy",
            "unlink",
        ]
        await eventually(lambda: inbox.watched_calls == 1)

        await fake.reconnect()
        await eventually(lambda: fake.resumed == 1 and inbox.watched_calls == 2)
        assert fake.identified == 1
    finally:
        await adapter.stop()
    assert adapter.client.is_closed() and adapter.state() == "stopped"
    with pytest.raises(PlatformUnavailable):
        await adapter.send(
            OutgoingMessage("k", ChannelRef("discord", "1", "t"), "x", Visibility.PUBLIC)
        )


async def test_a_refused_token_is_a_clear_start_error_that_does_not_show_it(
    fake_discord: Callable[..., Awaitable[FakeDiscord]], caplog: pytest.LogCaptureFixture
) -> None:
    await fake_discord()
    caplog.set_level(logging.DEBUG)
    adapter = gateway_adapter("wrong-token-value")
    with pytest.raises(DiscordStartError, match="Discord refused the token") as caught:
        await adapter.start(Recorder())
    assert "wrong-token-value" not in str(caught.value)
    assert "wrong-token-value" not in caplog.text
    assert adapter.client is not None and adapter.client.is_closed()


async def test_a_client_the_adapter_built_is_dropped_after_a_failed_start(
    fake_discord: Callable[..., Awaitable[FakeDiscord]],
) -> None:
    await fake_discord()
    adapter = DiscordAdapter(DiscordSettings(token=Secret("wrong-token")), ready_timeout=WAIT)
    with pytest.raises(DiscordStartError, match="refused the token"):
        await adapter.start(Recorder())
    assert adapter.client is None  # the next start builds a fresh one


async def test_a_missing_message_content_intent_is_a_clear_start_error(
    fake_discord: Callable[..., Awaitable[FakeDiscord]],
) -> None:
    await fake_discord(close_code=4014)
    adapter = gateway_adapter()
    with pytest.raises(DiscordStartError, match="Message Content intent"):
        await adapter.start(Recorder())
    assert adapter.client is not None and adapter.client.is_closed()


async def test_start_without_a_token_says_which_setting() -> None:
    with pytest.raises(DiscordStartError, match="PEERDESK_DISCORD_TOKEN"):
        await DiscordAdapter(DiscordSettings()).start(Recorder())


# -- end to end with the real pipeline ------------------------------------------------------------


@pytest.fixture
async def live(
    runtime: Runtime, world: World, make_adapter: Callable[..., DiscordAdapter]
) -> DiscordAdapter:
    """The adapter attached to the real pipeline, registered for the outbox."""
    adapter = make_adapter(settings=runtime.settings.discord)
    adapter.attach(runtime.pipeline)
    runtime.adapters["discord"] = adapter
    return adapter


async def count_rows(rt: Runtime, table: sa.Table) -> int:
    async with rt.store.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def no_more_sent() -> bool:
    return dpytest.sent_queue.empty()


async def test_opt_in_notice_case_and_reply_end_to_end(
    runtime: Runtime, world: World, live: DiscordAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = record_sends(monkeypatch, world.client)
    answer = await live.opt_in_command(world.ann, world.general, "channel", "nl")
    assert answer == ANSWERS["optin_channel"]
    assert await runtime.outbox.run_once() == 1
    notice = dpytest.get_message()
    expected = runtime.pipeline.text("optin_notice", "nl", channel_title="Club #general")
    assert (notice.channel, notice.content) == (world.general, live.escape(expected))

    question = await dpytest.message(DRUG_QUESTION, world.general, world.bob)
    (case,) = await runtime.store.list_cases()
    assert (case.platform, case.channel_title) == ("discord", "Club #general")

    volunteer = await runtime.store.add_user("vera", "hash", Role.VOLUNTEER)
    reply = await runtime.store.approve_reply(
        case.id,
        text="Begin met een *lage* dosis. @everyone",
        visibility=Visibility.PUBLIC,
        written_by=volunteer.id,
        approved_by=volunteer.id,
    )
    assert await runtime.outbox.run_once() == 1
    sent = dpytest.get_message()
    assert sent.channel == world.general
    assert sent.content == live.escape("Begin met een *lage* dosis. @everyone")
    assert payloads[-1]["message_reference"]["message_id"] == question.id
    assert no_more_sent()

    assert await runtime.outbox.run_once() == 0
    assert no_more_sent()
    detail = await runtime.store.get_case(case.id)
    (delivered,) = detail.replies
    assert (delivered.id, delivered.platform_message_id) == (reply.id, str(sent.id))
    statuses = [item.status for item in await runtime.store.outbox_items()]
    assert statuses == [OutboxStatus.SENT, OutboxStatus.SENT]


async def test_nothing_is_stored_without_an_admins_consent(
    runtime: Runtime, world: World, live: DiscordAdapter
) -> None:
    assert await live.opt_in_command(world.bob, world.general) == ANSWERS["not_admin"]
    await dpytest.message(DRUG_QUESTION, world.general, world.bob)

    assert await runtime.store.list_cases() == []
    assert await runtime.store.list_channels() == []
    assert await count_rows(runtime, schema.messages) == 0
    assert await runtime.store.outbox_items() == []


async def test_a_direct_message_opens_a_case_and_is_acknowledged(
    runtime: Runtime, world: World, live: DiscordAdapter
) -> None:
    dm = await world.bob.create_dm()
    await dpytest.message(DRUG_QUESTION, dm, world.bob)

    (case,) = await runtime.store.list_cases()
    assert case.channel_kind == "direct"
    assert await runtime.outbox.run_once() == 1
    sent = dpytest.get_message()
    (item,) = await runtime.store.outbox_items()
    acknowledgements = {runtime.pipeline.text("dm_acknowledgement", lang) for lang in LANGUAGES}
    assert item.text in acknowledgements
    assert (sent.channel, sent.content) == (dm, live.escape(item.text))


async def test_edits_and_deletions_reach_the_store(
    runtime: Runtime, world: World, live: DiscordAdapter
) -> None:
    await live.opt_in_command(world.ann, world.general, "server")
    question = await dpytest.message(DRUG_QUESTION, world.general, world.bob)
    (case,) = await runtime.store.list_cases()

    await edit(question, "hoeveel mdma is veilig als je 60 kilo weegt?")
    (message,) = (await runtime.store.get_case(case.id)).messages
    assert message.text == "hoeveel mdma is veilig als je 60 kilo weegt?"
    assert message.edited_at is not None

    backend.delete_message(question)
    await dpytest.run_all_events()
    (message,) = (await runtime.store.get_case(case.id)).messages
    assert (message.text, message.deleted_at is not None) == ("", True)
    assert (await runtime.store.get_case(case.id)).case.status is CaseStatus.DISMISSED


async def test_catch_up_after_downtime_takes_in_what_was_missed_once(
    runtime: Runtime, world: World, live: DiscordAdapter
) -> None:
    await live.opt_in_command(world.ann, world.general, "channel", "nl")
    await dpytest.message("hallo allemaal", world.general, world.ann)
    backend.get_state().stop_dispatch()  # the bot is down
    first = await dpytest.message(DRUG_QUESTION, world.general, world.bob)
    await dpytest.message("is xtc met alcohol gevaarlijk?", world.general, world.ann)
    backend.get_state().start_dispatch()
    assert await runtime.store.list_cases() == []

    assert await live.catch_up() == 2
    cases = await runtime.store.list_cases()
    assert len(cases) == 2
    messages = await count_rows(runtime, schema.messages)
    assert messages == 3

    assert await live.catch_up() == 0
    backend.get_state().parse_message_create(stored_payload(first))  # delivered once more
    await dpytest.run_all_events()
    assert len(await runtime.store.list_cases()) == 2
    assert await count_rows(runtime, schema.messages) == messages


def test_state_before_start_is_stopped() -> None:
    from bot.settings import DiscordSettings, Secret

    adapter = DiscordAdapter(DiscordSettings(token=Secret("x")))
    assert adapter.state() == "stopped"


async def test_an_urgent_alert_reaches_a_linked_volunteer_by_direct_message(
    runtime: Runtime, world: World, live: DiscordAdapter
) -> None:
    await live.opt_in_command(world.ann, world.general, "channel", "nl")
    assert await runtime.outbox.run_once() == 1
    dpytest.get_message()  # the opt-in notice
    volunteer = await runtime.store.add_user("vera", "hash", Role.VOLUNTEER)
    await runtime.store.set_on_duty(volunteer.id, True)
    await runtime.store.set_user_language(volunteer.id, "nl")  # alerts come in it
    code = await private_alerts.new_code(runtime.store, volunteer.id)
    assert (await live.link_command(world.ann, code)).startswith("Linked to vera.")

    await dpytest.message("mijn vriend wordt niet wakker na G", world.general, world.bob)
    (case,) = await runtime.store.list_cases()
    assert case.urgent
    async with asyncio.timeout(WAIT):  # the alert is queued just after the case
        while await runtime.outbox.run_once() == 0:  # noqa: ASYNC110 (polls the outbox)
            await asyncio.sleep(0.01)
    alert = dpytest.get_message()
    assert alert.channel == world.ann.dm_channel
    assert f"dringende casus {case.id} (Discord)" in alert.content
    assert "wakker" not in alert.content
    assert no_more_sent()

"""The Discord adapter: the only module that imports discord.py.

Watching: messages in guild channels and threads, and direct messages to the bot, go to
the inbox, which keeps only those of opted-in channels (and every direct chat, which is
consent in itself). Edits and deletions follow. Messages of bots (the adapter's own
included) and system messages are ignored. A message's attachments are handed over as
``[attachment: name]`` lines after its text, so volunteers see that a picture was posted.

Nothing is lost while the bot is away: on every READY and RESUMED the adapter reads each
watched channel's history after the newest message stored from it (at most
HISTORY_LIMIT per channel and pass) and hands it over again; the store recognises what
it already has. A message the inbox could not take (the database was down) is read
again from its channel's history by a retry with growing delays. A channel with nothing
stored yet is not read back: the adapter cannot tell which of its messages came before
the admin's consent.

Slash commands: ``/optin`` and ``/optout`` (scope channel or server; members with
Manage Server only), ``/privacy`` (info, export, delete), and ``/link`` and ``/unlink``
(a volunteer's own account for urgent alerts). Their logic lives in plain
methods (:meth:`DiscordAdapter.opt_in_command` …) that the interaction wrappers call and
answer ephemerally; tests call those methods directly.

Sending: every message carries a nonce derived from the outbox key and its text.
discord.py 2.7 always sends a nonce with ``enforce_nonce``, so Discord returns the
message it already created when the same nonce comes again within a few minutes: a
delivery retried inside that window (a lost answer, an outbox lease that ran out) posts
once. After the window, a retry posts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands

from bot.adapter import (
    Adapter,
    AdapterStartError,
    Inbox,
    PermanentDeliveryError,
    PlatformUnavailable,
    RateLimited,
    RecipientUnreachable,
)
from bot.models import (
    ChannelRef,
    IncomingMessage,
    MessageDeletion,
    MessageEdit,
    OptIn,
    OptOut,
    OutgoingMessage,
    Visibility,
    utcnow,
)
from bot.pipeline import server_chat_id
from bot.settings import LANGUAGES, DiscordSettings

logger = logging.getLogger(__name__)

PLATFORM = "discord"
# Messages read back per channel and catch-up pass; the next pass continues after them.
HISTORY_LIMIT = 1000
# Discord allows nonces of up to 25 characters.
NONCE_CHARS = 25
# Rate-limit waits longer than this raise discord.RateLimited (the outbox reschedules)
# instead of holding the delivery; 30 s is the least discord.py accepts.
MAX_RATELIMIT_WAIT = 60.0
RETRY_MAX_SECONDS = 300.0

# Discord's JSON error codes the adapter tells apart.
MISSING_ACCESS = 50001
CANNOT_MESSAGE_USER = 50007
MISSING_PERMISSIONS = 50013

Scope = Literal["channel", "server"]
Language = Literal["nl", "fr", "en"]
PrivacyAction = Literal["info", "export", "delete"]
ServerChannel = discord.abc.GuildChannel | discord.Thread | discord.PartialMessageable

# The short answers to slash commands, shown only to the member who typed the command.
# The texts the bot posts for everyone to read come from prompts/.
ANSWERS = {
    "not_in_server": "Use this command in a channel of a server.",
    "not_admin": "Only members with the Manage Server permission can switch peerdesk on or off.",
    "optin_channel": "peerdesk now watches this channel. A notice explaining it will be posted.",
    "optin_server": "peerdesk now watches every channel of this server. A notice explaining "
    "it will be posted in the server's system channel.",
    "already_channel": "peerdesk is already watching this channel.",
    "already_server": "peerdesk is already watching this server.",
    "optout_channel": "peerdesk no longer watches this channel.",
    "optout_server": "peerdesk no longer watches this server or any of its channels.",
    "not_watching_channel": "peerdesk was not watching this channel.",
    "not_watching_server": "peerdesk was not watching this server as a whole.",
    "export_intro": "Everything peerdesk keeps about you, as JSON.",
    "export_sent": "I sent you a direct message with everything peerdesk keeps about you.",
    "export_no_dm": "I could not send you a direct message. Allow direct messages from this "
    "server's members in your privacy settings, then try again.",
    "erased": "Done. peerdesk erased what it kept about you: {counts}.",
    "failed": "Something went wrong. Please try again in a few minutes.",
}
PRIVATE_REFUSAL = "this person does not accept private messages from the bot on Discord"


def _server_channel(guild: Any, channel: Any, language: str | None) -> ChannelRef:
    """A channel (or thread) of a server, as the engine names it."""
    name = getattr(channel, "name", None) or str(channel.id)
    return ChannelRef(
        platform=PLATFORM,
        chat_id=str(channel.id),
        title=f"{guild.name} #{name}",
        kind="group",
        language=language,
        server_id=str(guild.id),
    )


class DiscordStartError(AdapterStartError):
    """The Discord connection could not be made; the message says why, never the token."""


def intents() -> discord.Intents:
    """What the adapter asks the gateway for. Message content is a privileged intent:
    it must be switched on for the bot in the Discord developer portal."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


def check_shards(settings: DiscordSettings) -> None:
    """Raise ValueError when ``shard_ids`` does not fit ``shard_count``."""
    ids, count = tuple(settings.shard_ids), settings.shard_count
    if ids and count <= 0:
        raise ValueError(
            "discord.shard_ids is set but discord.shard_count is 0: "
            "set shard_count to the total number of shards"
        )
    bad = sorted(i for i in ids if not 0 <= i < count)
    if bad:
        raise ValueError(
            f"discord.shard_ids {bad} do not exist: with discord.shard_count = {count} "
            f"shard ids run from 0 to {count - 1}"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("discord.shard_ids lists a shard twice")


def build_client(settings: DiscordSettings) -> discord.Client:
    """The client the settings ask for (no I/O): sharded when ``shard_count`` is set."""
    check_shards(settings)
    options: dict[str, Any] = {
        "intents": intents(),
        "max_ratelimit_timeout": MAX_RATELIMIT_WAIT,
        "allowed_mentions": discord.AllowedMentions.none(),
        "chunk_guilds_at_startup": False,
    }
    if settings.shard_count > 0:
        if settings.shard_ids:  # else this process runs every shard
            options["shard_ids"] = list(settings.shard_ids)
        return discord.AutoShardedClient(shard_count=settings.shard_count, **options)
    return discord.Client(**options)


def message_text(message: discord.Message) -> str:
    """A message's text as it is handed over: its content, then one line per attachment."""
    lines = [message.content] if message.content else []
    lines += [f"[attachment: {a.filename}]" for a in message.attachments]
    return "\n".join(lines)


def nonce(message: OutgoingMessage) -> str:
    """The same outbox delivery always gets the same nonce; another delivery (another key,
    place or text) a different one, so Discord never mistakes one for the other."""
    seed = "\x00".join(
        (message.key, message.channel.chat_id, message.recipient_id or "", message.text)
    )
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:NONCE_CHARS]


def _language(locale: discord.Locale | str | None) -> str | None:
    code = str(locale or "").split("-")[0].lower()
    return code if code in LANGUAGES else None


def _int(value: str | int | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class DiscordAdapter(Adapter):
    """Discord through discord.py: watching, catch-up, slash commands and delivery.

    ``client`` replaces the one :meth:`start` would build (tests inject a dpytest client
    and call :meth:`attach`). ``sync_commands`` registers the slash commands with Discord
    once per start. ``retry_seconds`` is the first wait before reading back messages the
    inbox could not take; it doubles up to five minutes.
    """

    platform = PLATFORM
    max_text_chars = 2000

    def __init__(
        self,
        settings: DiscordSettings,
        *,
        client: discord.Client | None = None,
        sync_commands: bool = True,
        ready_timeout: float = 60.0,
        retry_seconds: float = 5.0,
    ) -> None:
        check_shards(settings)
        self.settings = settings
        self.sync_commands = sync_commands
        self.ready_timeout = ready_timeout
        self.retry_seconds = retry_seconds
        self._client = client
        self._built = False  # the client is ours: dropped at stop, a new one at next start
        self._inbox: Inbox | None = None
        self._tree: app_commands.CommandTree[discord.Client] | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._run_now = False
        self._catch_up_lock = asyncio.Lock()
        self._catch_up_failed = False
        # Channels to read again from this message id on (exclusive): ingest failed there.
        self._pending: dict[int, tuple[int, ChannelRef]] = {}
        # Edits and deletions the inbox could not take; tried again with the catch-up.
        self._failed_events: list[MessageEdit | MessageDeletion] = []

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def client(self) -> discord.Client | None:
        return self._client

    def state(self) -> str:
        client = self._client
        if client is None or client.is_closed():
            return "stopped"
        return "connected" if client.is_ready() else "connecting"

    @property
    def tree(self) -> app_commands.CommandTree[discord.Client]:
        if self._tree is None:
            raise RuntimeError("the Discord adapter is not attached yet")
        return self._tree

    async def start(self, inbox: Inbox) -> None:
        """Log in, connect in the background and return once Discord says READY."""
        if self._gateway is not None:
            raise RuntimeError("the Discord adapter is already started")
        token = self.settings.token.get().strip()
        if not token:
            raise DiscordStartError("no Discord token: set discord.token (PEERDESK_DISCORD_TOKEN)")
        if self._client is None:
            self._client, self._built = build_client(self.settings), True
        client = self._client
        self.attach(inbox)
        try:
            await client.login(token)
        except discord.LoginFailure:
            await self._abort(client)
            raise DiscordStartError(
                "Discord refused the token (discord.token): copy the bot token again from "
                "the Discord developer portal"
            ) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._abort(client)
            raise DiscordStartError(f"cannot log in to Discord: {exc}") from exc
        except BaseException:
            await self._abort(client)
            raise
        self._gateway = asyncio.create_task(self._run_gateway(client), name="discord-gateway")
        ready = asyncio.create_task(client.wait_until_ready(), name="discord-ready")
        done, _ = await asyncio.wait(
            {ready, self._gateway}, timeout=self.ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            reason = self._gateway_failure() or (
                f"Discord did not become ready within {self.ready_timeout:.0f} seconds"
            )
            await self.stop()
            raise DiscordStartError(reason)
        if self.sync_commands:
            try:
                await self.tree.sync()
            except Exception as exc:  # the bot still watches; only the commands may be stale
                logger.warning("Discord slash commands were not registered: %s", exc)
        logger.info("Discord connected as %s", client.user)

    def _gateway_failure(self) -> str | None:
        task = self._gateway
        if task is None or not task.done() or task.cancelled():
            return None
        exc = task.exception()
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            return (
                "Discord refused the Message Content intent: switch it on for the bot in "
                "the Discord developer portal (Bot → Privileged Gateway Intents)"
            )
        if exc is not None:
            return f"the Discord gateway connection failed: {exc}"
        return "the Discord gateway connection closed during startup"

    async def _run_gateway(self, client: discord.Client) -> None:
        try:
            await client.connect(reconnect=True)
        except Exception:
            logger.exception("the Discord gateway connection stopped")
            raise

    async def _abort(self, client: discord.Client) -> None:
        self._inbox = None
        await self._stop_worker()
        with contextlib.suppress(Exception):
            await client.close()
        self._forget_client()

    def _forget_client(self) -> None:
        # A closed discord.py client cannot connect again: the next start builds anew.
        if self._built:
            self._client, self._tree, self._built = None, None, False

    def attach(self, inbox: Inbox) -> None:
        """Hand the client's events to ``inbox`` and register the slash commands, without
        connecting: :meth:`start` does this before logging in; tests call it on a client
        that dpytest drives."""
        client = self._client
        if client is None:
            raise RuntimeError("no Discord client to attach to")
        self._inbox = inbox
        handlers: dict[str, Callable[..., Awaitable[None]]] = {
            "on_ready": self._on_connected,
            "on_resumed": self._on_connected,
            "on_shard_ready": self._on_shard_connected,
            "on_message": self._on_message,
            "on_raw_message_edit": self._on_raw_message_edit,
            "on_raw_message_delete": self._on_raw_message_delete,
            "on_raw_bulk_message_delete": self._on_raw_bulk_message_delete,
        }
        for name, handler in handlers.items():
            setattr(client, name, handler)  # what client.event does, under our names
        if self._tree is None:
            self._tree = self._build_tree(client)
        if self._worker is None:
            self._worker = asyncio.create_task(self._catch_up_worker(), name="discord-catch-up")

    async def stop(self) -> None:
        """Stop handing events over and close the connection :meth:`start` opened. A client
        that was only attached (tests) stays open for its owner."""
        self._inbox = None
        await self._stop_worker()
        gateway, self._gateway = self._gateway, None
        if gateway is None:
            return
        if self._client is not None:
            try:
                await self._client.close()
            except Exception:
                logger.exception("the Discord client did not close cleanly")
        # Its failure, if any, was logged already.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(gateway, timeout=10)
        self._forget_client()

    async def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    # -- events --------------------------------------------------------------------------

    async def _on_connected(self) -> None:
        self.request_catch_up()

    async def _on_shard_connected(self, shard_id: int) -> None:
        # One shard of a sharded client identified again: its channels may have gaps.
        self.request_catch_up()

    def channel_ref(
        self,
        channel: Any,
        *,
        person: discord.abc.User | None = None,
        language: str | None = None,
    ) -> ChannelRef | None:
        """How the engine names a Discord channel; None for channels the bot cannot watch."""
        if isinstance(channel, discord.DMChannel):
            who = person or channel.recipient
            name = who.display_name if who is not None else str(channel.id)
            return ChannelRef(
                platform=PLATFORM, chat_id=str(channel.id), title=f"DM {name}", kind="direct"
            )
        guild = getattr(channel, "guild", None)
        if guild is None:
            return None
        return _server_channel(guild, channel, language)

    def incoming(self, message: discord.Message) -> IncomingMessage | None:
        """The message as the inbox takes it, or None when it is not a person's message."""
        if message.author.bot or message.webhook_id is not None or message.is_system():
            return None
        text = message_text(message)
        ref = self.channel_ref(message.channel, person=message.author)
        if not text or ref is None:
            return None
        reply_to = None
        reference = message.reference
        if (
            reference is not None
            and reference.message_id is not None
            and reference.type is discord.MessageReferenceType.reply
        ):
            reply_to = str(reference.message_id)
        return IncomingMessage(
            channel=ref,
            message_id=str(message.id),
            author_id=str(message.author.id),
            author_name=message.author.display_name,
            text=text,
            sent_at=message.created_at,
            reply_to_message_id=reply_to,
        )

    async def _on_message(self, message: discord.Message) -> None:
        inbox = self._inbox
        incoming = self.incoming(message)
        if inbox is None or incoming is None:
            return
        try:
            await inbox.ingest(incoming)
        except Exception:
            logger.exception(
                "Discord message %s was not taken in; it will be read again from the history",
                message.id,
            )
            self._remember(message.channel.id, message.id - 1, incoming.channel)

    def _event_ref(self, channel_id: int, guild_id: int | None) -> ChannelRef:
        client = self._client
        channel = client.get_channel(channel_id) if client is not None else None
        ref = self.channel_ref(channel) if channel is not None else None
        return ref or ChannelRef(
            platform=PLATFORM,
            chat_id=str(channel_id),
            title=str(channel_id),
            kind="group" if guild_id else "direct",
            server_id=str(guild_id) if guild_id else None,
        )

    async def _on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        if message.author.bot or message.webhook_id is not None:
            return
        text = message_text(message)
        cached = payload.cached_message
        if not text or (cached is not None and message_text(cached) == text):
            return  # an embed was resolved, or a pin: the text did not change
        ref = self.channel_ref(message.channel, person=message.author)
        ref = ref or self._event_ref(payload.channel_id, payload.guild_id)
        await self._hand_over(
            MessageEdit(
                channel=ref,
                message_id=str(message.id),
                text=text,
                author_id=str(message.author.id),
            )
        )

    async def _on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        ref = self._event_ref(payload.channel_id, payload.guild_id)
        await self._hand_over(MessageDeletion(channel=ref, message_id=str(payload.message_id)))

    async def _on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        ref = self._event_ref(payload.channel_id, payload.guild_id)
        for message_id in sorted(payload.message_ids):
            await self._hand_over(MessageDeletion(channel=ref, message_id=str(message_id)))

    async def _hand_over(self, event: MessageEdit | MessageDeletion) -> bool:
        inbox = self._inbox
        if inbox is None:
            return False
        try:
            if isinstance(event, MessageEdit):
                await inbox.edit(event)
            else:
                await inbox.delete(event)
        except Exception:
            what = "edit" if isinstance(event, MessageEdit) else "deletion"
            logger.exception(
                "Discord %s of message %s not taken in; will retry", what, event.message_id
            )
            self._failed_events.append(event)
            self._wake.set()
            return False
        return True

    # -- catch-up ------------------------------------------------------------------------

    def request_catch_up(self) -> None:
        """Read the watched channels' history soon (after READY and RESUMED)."""
        self._run_now = True
        self._wake.set()

    def _remember(self, channel_id: int, after: int, ref: ChannelRef) -> None:
        known = self._pending.get(channel_id)
        self._pending[channel_id] = (min(after, known[0]) if known else after, ref)
        self._wake.set()

    def _has_failures(self) -> bool:
        return bool(self._pending or self._failed_events or self._catch_up_failed)

    async def _catch_up_worker(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_seconds
        retry_at: float | None = None
        while True:
            self._wake.clear()
            due = self._run_now or (retry_at is not None and loop.time() >= retry_at)
            if not due:
                if retry_at is None and self._has_failures():
                    retry_at = loop.time() + delay
                timeout = None if retry_at is None else max(retry_at - loop.time(), 0.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            self._run_now = False
            retry_at = None
            try:
                await self.catch_up()
            except Exception:
                logger.exception("Discord catch-up failed; will retry")
                self._catch_up_failed = True
            if self._has_failures():
                retry_at = loop.time() + delay
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            else:
                delay = self.retry_seconds

    async def catch_up(self) -> int:
        """Hand over what the watched channels said after the newest stored message, and
        what the inbox could not take before. Returns how many messages were handed over
        (the store drops the ones it has). Raises when the inbox cannot list channels."""
        inbox = self._inbox
        if inbox is None:
            raise RuntimeError("the Discord adapter is not attached")
        async with self._catch_up_lock:
            watched = await inbox.watched_channels(PLATFORM)
            self._catch_up_failed = False
            starts: dict[int, tuple[int, ChannelRef]] = {}
            for ref, last in watched:
                channel_id, after = _int(ref.chat_id), _int(last)
                if channel_id is not None and after is not None:
                    starts[channel_id] = (after, ref)
            pending, self._pending = self._pending, {}
            for channel_id, (after, ref) in pending.items():
                if channel_id in starts:
                    after = min(after, starts[channel_id][0])
                starts[channel_id] = (after, ref)
            handed = 0
            for channel_id, (after, ref) in starts.items():
                handed += await self._read_history(inbox, channel_id, after, ref)
            events, self._failed_events = self._failed_events, []
            for event in events:
                await self._hand_over(event)
        return handed

    async def _resolve(self, channel_id: int, ref: ChannelRef) -> discord.abc.Messageable | None:
        """The channel to read, if this process should read it: a guild channel of one of
        its servers (other shards read theirs), or a direct chat on the shard that gets
        direct messages."""
        client = self._client
        if client is None:
            return None
        channel: Any = client.get_channel(channel_id)
        if channel is None:
            if ref.kind == "direct":
                if not self._gets_direct_messages(client):
                    return None
            else:
                guild_id = _int(ref.server_id)
                if guild_id is None or client.get_guild(guild_id) is None:
                    return None
            try:
                channel = await client.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden) as exc:
                logger.warning("Discord channel %s cannot be read back: %s", channel_id, exc)
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    @staticmethod
    def _gets_direct_messages(client: discord.Client) -> bool:
        if isinstance(client, discord.AutoShardedClient):
            return client.shard_ids is None or 0 in client.shard_ids
        return client.shard_id in (None, 0)

    async def _read_history(
        self, inbox: Inbox, channel_id: int, after: int, ref: ChannelRef
    ) -> int:
        try:
            channel = await self._resolve(channel_id, ref)
            if channel is None:
                return 0
            messages = [
                m
                async for m in channel.history(
                    limit=HISTORY_LIMIT, after=discord.Object(id=after), oldest_first=True
                )
            ]
        except (discord.Forbidden, discord.NotFound) as exc:
            logger.warning("the history of Discord channel %s cannot be read: %s", channel_id, exc)
            return 0
        except (
            discord.HTTPException,
            discord.RateLimited,
            aiohttp.ClientError,
            OSError,
            TimeoutError,
        ) as exc:
            logger.warning("the history of Discord channel %s: %s; will retry", channel_id, exc)
            self._remember(channel_id, after, ref)
            return 0
        if len(messages) >= HISTORY_LIMIT:
            logger.warning(
                "Discord channel %s: %d messages read back; the rest follows at the next pass",
                channel_id,
                HISTORY_LIMIT,
            )
        handed = 0
        # Oldest first whatever order the history came in, so replies thread as they did.
        for message in sorted(messages, key=lambda m: m.id):
            incoming = self.incoming(message) if message.id > after else None
            if incoming is None:
                continue
            try:
                await inbox.ingest(incoming)
            except Exception:
                logger.exception("Discord message %s not taken in; will retry", message.id)
                self._remember(channel_id, message.id - 1, ref)
                return handed
            handed += 1
        return handed

    # -- slash commands --------------------------------------------------------------------

    def _build_tree(self, client: discord.Client) -> app_commands.CommandTree[discord.Client]:
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

        @tree.command(name="optin", description="Let peerdesk volunteers read this channel")
        @app_commands.describe(
            scope="This channel, or every channel of the server",
            language="The language of the channel (nl, fr or en)",
        )
        @app_commands.guild_only()
        @app_commands.default_permissions(manage_guild=True)
        async def optin(
            interaction: discord.Interaction[discord.Client],
            scope: Scope,
            language: Language | None = None,
        ) -> None:
            async def work(member: discord.Member, channel: ServerChannel) -> str:
                return await self.opt_in_command(member, channel, scope, language)

            await self._answer_in_server(interaction, "optin", work)

        @tree.command(name="optout", description="Stop peerdesk reading this channel")
        @app_commands.describe(scope="This channel, or the server as a whole")
        @app_commands.guild_only()
        @app_commands.default_permissions(manage_guild=True)
        async def optout(interaction: discord.Interaction[discord.Client], scope: Scope) -> None:
            async def work(member: discord.Member, channel: ServerChannel) -> str:
                return await self.opt_out_command(member, channel, scope)

            await self._answer_in_server(interaction, "optout", work)

        @tree.command(name="privacy", description="What peerdesk keeps about you")
        @app_commands.describe(
            action="info: what is kept; export: send me my data; delete: erase my data"
        )
        async def privacy(
            interaction: discord.Interaction[discord.Client], action: PrivacyAction
        ) -> None:
            language = _language(interaction.locale)
            await self._answer(
                interaction,
                "privacy",
                lambda: self.privacy_command(interaction.user, action, language),
            )

        @tree.command(name="link", description="Get peerdesk's urgent alerts here (volunteers)")
        @app_commands.describe(code="The code from your account page in the console")
        async def link(interaction: discord.Interaction[discord.Client], code: str) -> None:
            await self._answer(
                interaction, "link", lambda: self.link_command(interaction.user, code)
            )

        @tree.command(name="unlink", description="Stop peerdesk's urgent alerts here")
        async def unlink(interaction: discord.Interaction[discord.Client]) -> None:
            await self._answer(interaction, "unlink", lambda: self.unlink_command(interaction.user))

        return tree

    async def _answer(
        self,
        interaction: discord.Interaction[discord.Client],
        command: str,
        work: Callable[[], Awaitable[str]],
    ) -> None:
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as exc:  # the interaction expired (3 s)
            logger.warning("Discord /%s could not be acknowledged: %s", command, exc)
            return
        try:
            text = await work()
        except Exception:
            logger.exception("Discord /%s failed", command)
            text = ANSWERS["failed"]
        try:
            await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as exc:
            logger.warning("Discord /%s answer not delivered: %s", command, exc)

    async def _answer_in_server(
        self,
        interaction: discord.Interaction[discord.Client],
        command: str,
        work: Callable[[discord.Member, ServerChannel], Awaitable[str]],
    ) -> None:

        async def run() -> str:
            member, channel = interaction.user, interaction.channel
            if not isinstance(member, discord.Member) or not isinstance(
                channel, discord.abc.GuildChannel | discord.Thread | discord.PartialMessageable
            ):
                return ANSWERS["not_in_server"]
            return await work(member, channel)

        await self._answer(interaction, command, run)

    def _scope_ref(
        self, guild: discord.Guild, channel: ServerChannel, scope: str, language: str | None
    ) -> ChannelRef:
        if scope not in ("channel", "server"):
            raise ValueError(f"scope must be channel or server, not {scope!r}")
        if language is not None and language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
        if scope == "server":
            return ChannelRef(
                platform=PLATFORM,
                chat_id=server_chat_id(str(guild.id)),
                title=guild.name,
                kind="server",
                language=language,
                server_id=str(guild.id),
            )
        return _server_channel(guild, channel, language)

    def _require_inbox(self) -> Inbox:
        if self._inbox is None:
            raise RuntimeError("the Discord adapter is not attached")
        return self._inbox

    async def opt_in_command(
        self,
        member: discord.Member,
        channel: ServerChannel,
        scope: str = "channel",
        language: str | None = None,
    ) -> str:
        """``/optin``: a member with Manage Server lets peerdesk watch ``channel`` (scope
        channel) or every channel of the server (scope server). Returns the answer."""
        inbox = self._require_inbox()
        if not member.guild_permissions.manage_guild:
            return ANSWERS["not_admin"]
        ref = self._scope_ref(member.guild, channel, scope, language)
        changed = await inbox.opt_in(
            OptIn(
                channel=ref,
                admin_id=str(member.id),
                admin_name=member.display_name,
                at=utcnow(),
            )
        )
        return ANSWERS[f"optin_{scope}" if changed else f"already_{scope}"]

    async def opt_out_command(
        self, member: discord.Member, channel: ServerChannel, scope: str = "channel"
    ) -> str:
        """``/optout``: the reverse of :meth:`opt_in_command`. Returns the answer."""
        inbox = self._require_inbox()
        if not member.guild_permissions.manage_guild:
            return ANSWERS["not_admin"]
        ref = self._scope_ref(member.guild, channel, scope, None)
        changed = await inbox.opt_out(OptOut(channel=ref, admin_id=str(member.id), at=utcnow()))
        return ANSWERS[f"optout_{scope}" if changed else f"not_watching_{scope}"]

    async def privacy_command(
        self, user: discord.User | discord.Member, action: str, language: str | None = None
    ) -> str:
        """``/privacy``: ``info`` answers with the privacy notice, ``export`` sends the
        person their data by direct message, ``delete`` erases it. Returns the answer."""
        inbox = self._require_inbox()
        if action == "info":
            return inbox.text("privacy_notice", language)
        if action == "export":
            data = await inbox.export_person(PLATFORM, str(user.id))
            body = json.dumps(data, ensure_ascii=False, indent=2, default=str)
            export = discord.File(io.BytesIO(body.encode("utf-8")), filename="peerdesk.json")
            try:
                await user.send(
                    ANSWERS["export_intro"],
                    file=export,
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            except discord.Forbidden:
                return ANSWERS["export_no_dm"]
            except (discord.HTTPException, discord.RateLimited, aiohttp.ClientError, OSError):
                logger.exception("a /privacy export could not be sent")
                return ANSWERS["failed"]
            return ANSWERS["export_sent"]
        if action == "delete":
            counts = await inbox.erase_person(PLATFORM, str(user.id))
            said = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items())
            return ANSWERS["erased"].format(counts=said or "nothing")
        raise ValueError(f"action must be info, export or delete, not {action!r}")

    async def link_command(self, user: discord.User | discord.Member, code: str) -> str:
        """``/link``: a volunteer links this Discord account for urgent alerts by direct
        message. The answer is ephemeral, so the code is safe even in a server channel."""
        return await self._require_inbox().link_account(PLATFORM, str(user.id), code)

    async def unlink_command(self, user: discord.User | discord.Member) -> str:
        """``/unlink``: no more urgent alerts to this account."""
        return await self._require_inbox().unlink_account(PLATFORM, str(user.id))

    # -- sending -------------------------------------------------------------------------

    def escape(self, text: str) -> str:
        """No markdown and no mentions: a reply shows exactly what the volunteer wrote, and
        ``@everyone`` in it pings nobody (AllowedMentions.none() is sent as well)."""
        return discord.utils.escape_mentions(discord.utils.escape_markdown(text))

    def private_refusal(self, direct_ok: bool | None) -> str | None:
        return PRIVATE_REFUSAL if direct_ok is False else None

    async def send(self, message: OutgoingMessage) -> str:
        client = self._client
        if client is None or client.is_closed() or self._inbox is None:
            raise PlatformUnavailable("the Discord adapter is not connected")
        private = message.visibility is Visibility.PRIVATE
        try:
            sent = await self._deliver(client, message)
        except discord.RateLimited as exc:
            raise RateLimited(str(exc), retry_after=exc.retry_after) from exc
        except discord.Forbidden as exc:
            raise self._refused(exc, private=private) from exc
        except discord.NotFound as exc:
            raise PermanentDeliveryError(
                "the Discord account no longer exists"
                if private
                else "the Discord channel no longer exists, or the bot was removed from it"
            ) from exc
        except discord.HTTPException as exc:
            if exc.status == 429 or exc.status >= 500:
                raise PlatformUnavailable(f"Discord answered {exc.status}") from exc
            raise PermanentDeliveryError(
                f"Discord refused the message ({exc.status}, code {exc.code}): {exc.text}"
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise PlatformUnavailable(f"Discord cannot be reached: {exc!r}") from exc
        return str(sent.id)

    @staticmethod
    def _refused(exc: discord.Forbidden, *, private: bool) -> PermanentDeliveryError:
        if exc.code == CANNOT_MESSAGE_USER:
            return RecipientUnreachable(PRIVATE_REFUSAL)
        if exc.code == MISSING_PERMISSIONS:
            return PermanentDeliveryError(
                "the bot lacks a permission in this Discord channel: it needs View Channel, "
                "Send Messages and Read Message History there"
            )
        if exc.code == MISSING_ACCESS:
            return PermanentDeliveryError(
                "the bot has no access to this Discord channel any more (it was removed, or "
                "the channel was made private)"
            )
        return PermanentDeliveryError(
            f"Discord does not let the bot post here ({exc.text or 'forbidden'})"
        )

    async def _deliver(self, client: discord.Client, message: OutgoingMessage) -> discord.Message:
        options: dict[str, Any] = {
            "allowed_mentions": discord.AllowedMentions.none(),
            "nonce": nonce(message),
        }
        if message.visibility is Visibility.PRIVATE:
            user_id = _int(message.recipient_id)
            if user_id is None:
                raise PermanentDeliveryError("no Discord account to write to privately")
            user = client.get_user(user_id) or await client.fetch_user(user_id)
            return await user.send(message.text, **options)
        if message.channel.kind == "server":
            destination = await self._server_channel(client, message.channel)
            return await destination.send(message.text, **options)
        channel_id = _int(message.channel.chat_id)
        if channel_id is None:
            raise PermanentDeliveryError(f"{message.channel.chat_id!r} is no Discord channel")
        # Not in the cache (another shard's server, a direct chat from before a restart):
        # sending needs no more than the channel's id.
        found = client.get_channel(channel_id) or client.get_partial_messageable(
            channel_id, guild_id=_int(message.channel.server_id)
        )
        if not isinstance(found, discord.abc.Messageable):
            raise PermanentDeliveryError("this Discord channel cannot hold messages")
        reply_to = _int(message.reply_to_message_id)
        if reply_to is not None:
            options["reference"] = discord.MessageReference(
                message_id=reply_to, channel_id=channel_id, fail_if_not_exists=False
            )
        return await found.send(message.text, **options)

    async def _server_channel(
        self, client: discord.Client, ref: ChannelRef
    ) -> discord.abc.Messageable:
        """Where a notice to a whole server goes: its system channel, or else the first
        text channel the bot may write in."""
        guild_id = _int(ref.server_id or ref.chat_id.removeprefix("server:"))
        if guild_id is None:
            raise PermanentDeliveryError(f"{ref.chat_id!r} is no Discord server")
        guild = client.get_guild(guild_id)
        if guild is None:  # a server of another shard: ask Discord for its system channel
            system = _int((await client.http.get_guild(guild_id)).get("system_channel_id"))
            if system is None:
                raise PermanentDeliveryError(
                    "the Discord server has no system channel for the bot's notice"
                )
            return client.get_partial_messageable(system, guild_id=guild_id)
        me = guild.me
        candidates = [guild.system_channel, *sorted(guild.text_channels, key=lambda c: c.position)]
        for channel in candidates:
            if channel is None:
                continue
            allowed = channel.permissions_for(me) if me is not None else None
            if allowed is None or (allowed.view_channel and allowed.send_messages):
                return channel
        raise PermanentDeliveryError(
            "the bot may not write in any text channel of this Discord server: give it Send "
            "Messages in the system channel"
        )

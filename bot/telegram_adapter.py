"""Telegram, through python-telegram-bot's ``Bot`` inside our own event loop.

Updates come by long polling (our own loop around ``getUpdates``) or by webhook (a route
on the console's web server). Either way an update is acknowledged to Telegram only after
the inbox stored it: in polling mode the offset moves past an update only once it was
handled, in webhook mode the answer is 200 only then. A redelivered update is recognised
by the store (chat + message id), so it never makes a second case.

PTB's ``Application``/``Updater`` is not used for polling: it confirms an update to
Telegram as soon as the next batch is asked for, whether or not its handler succeeded.

Telegram tells bots about edits but not about deletions in groups, so deletions are not
seen here; a group that becomes a supergroup changes id, and the channel moves with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# python-telegram-bot 22 is moving its time periods from int seconds to timedelta; we
# take the new behaviour now (documented opt-in), which reads the same in both versions.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import Bot, Chat, LinkPreviewOptions, Message, ReplyParameters, Update, User
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.adapter import (
    Adapter,
    AdapterStartError,
    Inbox,
    PermanentDeliveryError,
    PlatformUnavailable,
    RateLimited,
    RecipientUnreachable,
    WebhookHandler,
)
from bot.failures import FailureStreak
from bot.models import (
    ChannelRef,
    IncomingMessage,
    MessageEdit,
    OptIn,
    OptOut,
    OutgoingMessage,
    Visibility,
    utcnow,
)
from bot.settings import LANGUAGES, TelegramSettings
from bot.splitting import split_text

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
ALLOWED_UPDATES = ("message", "edited_message", "my_chat_member")
ADMIN_STATUSES = ("creator", "administrator")
# Telegram posts as this user when an admin writes anonymously on behalf of the group.
ANONYMOUS_ADMIN_ID = 1087968824
MAX_RETRY_SECONDS = 60.0
# A mention needs "@" directly before the name; a word joiner between them keeps the
# text readable and notifies nobody.
_MENTION = re.compile(r"@(?=\w)")
# What a private message without text stands for, so volunteers see that someone wrote.
_MEDIA = {
    "voice": "[voice message]",
    "audio": "[audio]",
    "video_note": "[video message]",
    "video": "[video]",
    "photo": "[photo]",
    "sticker": "[sticker]",
    "animation": "[GIF]",
    "document": "[file]",
    "location": "[location]",
    "contact": "[contact]",
}


class MalformedUpdate(ValueError):
    """An update that is not what the Bot API sends (a stranger's, or broken): refused,
    never retried, so it cannot hold up the updates after it."""


def _check_chat(chat: Any, what: str) -> None:
    if not (
        isinstance(chat, Chat)
        and isinstance(chat.id, int)
        and isinstance(chat.type, str)
        and isinstance(chat.title, str | None)
    ):
        raise MalformedUpdate(f"{what} without a proper chat")


def _check_user(user: Any, what: str) -> None:
    if not (
        isinstance(user, User)
        and isinstance(user.id, int)
        and isinstance(user.first_name, str)
        and isinstance(user.last_name, str | None)
    ):
        raise MalformedUpdate(f"{what} whose sender is not a proper user")


def _check(message: Message) -> None:
    """Raise :class:`MalformedUpdate` unless every field we read has the Bot API's type
    (python-telegram-bot parses leniently: a wrong type gets through to us as it is)."""
    if not isinstance(message.chat, Chat):
        raise MalformedUpdate("a message without a chat")
    _check_chat(message.chat, "a message")
    if not isinstance(message.message_id, int) or not isinstance(message.date, datetime):
        raise MalformedUpdate("a message without a proper id or date")
    for name in ("text", "caption"):
        if not isinstance(getattr(message, name), str | None):
            raise MalformedUpdate(f"a message whose {name} is not text")
    if message.from_user is not None:
        _check_user(message.from_user, "a message")
    if message.sender_chat is not None:
        _check_chat(message.sender_chat, "a message sent as a chat")
    reply_to = message.reply_to_message
    if reply_to is not None and not (
        isinstance(reply_to, Message) and isinstance(reply_to.message_id, int)
    ):
        raise MalformedUpdate("a message replying to something that is not a message")
    if not isinstance(message.migrate_to_chat_id, int | None):
        raise MalformedUpdate("a message moving its chat to no proper chat")


def _check_membership(change: Any) -> None:
    """As :func:`_check`, for a change of the bot's membership in a chat."""
    _check_chat(getattr(change, "chat", None), "a membership change")
    _check_user(getattr(change, "from_user", None), "a membership change")
    new = getattr(change, "new_chat_member", None)
    if new is None or not isinstance(getattr(new, "status", None), str):
        raise MalformedUpdate("a membership change without the new status")


class TelegramStartError(AdapterStartError):
    """The Telegram adapter cannot start; the message says why (never the token)."""


def _when(message: Message) -> datetime:
    date = message.date
    return date if date.tzinfo else date.replace(tzinfo=UTC)


# The commands the bot answers; anything else starting with / is a message like others.
COMMANDS = ("optin", "optout", "privacy", "start", "help", "link", "unlink")


class TelegramAdapter(Adapter):
    platform = PLATFORM
    max_text_chars = 4096

    def __init__(self, settings: TelegramSettings, *, webhook_secret: str = "") -> None:
        if not settings.token:
            raise TelegramStartError("telegram.token is empty")
        if settings.mode == "webhook" and not settings.webhook_url:
            raise TelegramStartError("telegram.mode is webhook but telegram.webhook_url is empty")
        self.settings = settings
        self.webhook_secret = webhook_secret
        self.bot = Bot(
            settings.token.get(),
            base_url=settings.base_url,
            base_file_url=settings.base_file_url,
            request=HTTPXRequest(
                connect_timeout=settings.request_timeout,
                read_timeout=settings.request_timeout,
                write_timeout=settings.request_timeout,
                pool_timeout=settings.request_timeout,
            ),
            get_updates_request=HTTPXRequest(
                connect_timeout=settings.request_timeout,
                read_timeout=settings.poll_timeout + settings.request_timeout,
                write_timeout=settings.request_timeout,
            ),
        )
        self.username = ""
        self.offset: int | None = None
        self.retry_seconds = 1.0  # first pause after a failure; doubles up to a minute
        self._store_failures = FailureStreak(
            logger, "Telegram: storing an update (it is not confirmed, so it comes again)"
        )
        self._inbox: Inbox | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        try:
            await self._connect()
        except (NetworkError, TimeoutError) as exc:
            # Telegram is down or unreachable: keep starting, and keep trying.
            logger.warning("Telegram is unreachable (%s); will keep trying", exc)
        name = "telegram-polling" if self.settings.mode == "polling" else "telegram-connect"
        self._task = asyncio.create_task(self._run(), name=name)

    async def _connect(self) -> None:
        """Ask who we are (checks the token) and set up the webhook or polling."""
        try:
            await self.bot.initialize()
        except InvalidToken:
            raise TelegramStartError(
                "Telegram refused the bot token (telegram.token): check it with @BotFather"
            ) from None
        self.username = self.bot.username
        if self.settings.mode == "webhook":
            url = self.settings.webhook_url.rstrip("/") + self.settings.webhook_path
            await self.bot.set_webhook(
                url=url, secret_token=self.webhook_secret, allowed_updates=list(ALLOWED_UPDATES)
            )
            logger.info("Telegram webhook set to %s", url)
        else:
            # A webhook left from another deployment would make getUpdates fail.
            await self.bot.delete_webhook()
            logger.info("Telegram: polling as @%s", self.username)
        self._ready.set()

    async def _run(self) -> None:
        delay = self.retry_seconds
        while not self._ready.is_set():
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
            try:
                await self._connect()
            except (NetworkError, TimeoutError) as exc:
                logger.warning("Telegram still unreachable: %s", exc)
            except TelegramStartError as exc:
                logger.error("%s", exc)
        if self.settings.mode == "polling":
            await self._poll()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.settings.mode == "polling" and self.offset is not None and self._ready.is_set():
            # Confirm what was handled, so the next start does not fetch it again (it
            # would be recognised anyway).
            with contextlib.suppress(TelegramError, TimeoutError):
                await self.bot.get_updates(offset=self.offset, limit=1, timeout=0)
        with contextlib.suppress(TelegramError, RuntimeError):
            await self.bot.shutdown()

    # -- receiving --------------------------------------------------------------------

    async def _poll(self) -> None:
        delay = self.retry_seconds
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=self.offset,
                    timeout=self.settings.poll_timeout,
                    allowed_updates=list(ALLOWED_UPDATES),
                )
            except RetryAfter as exc:
                await asyncio.sleep(_retry_after(exc))
                continue
            except Conflict as exc:
                logger.error("Telegram: another instance is polling with this token (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            except (TelegramError, TimeoutError) as exc:
                logger.warning("Telegram getUpdates failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            delay = self.retry_seconds
            for update in updates:
                if not await self._handle_until_stored(update):
                    break  # retry this update (not confirmed) after the pause
                self.offset = update.update_id + 1

    async def _handle_until_stored(self, update: Update) -> bool:
        """Handle one update; on failure pause and return False (it will come again)."""
        try:
            await self.handle(update)
        except MalformedUpdate as exc:
            logger.error("Telegram update %s skipped: %s", update.update_id, exc)
        except Exception:
            # Usually the database is away: each try logs one line after the first.
            await asyncio.sleep(self._store_failures.failed(self.retry_seconds))
            return False
        self._store_failures.succeeded()
        return True

    def state(self) -> str:
        return "connected" if self._ready.is_set() else "connecting"

    def webhooks(self) -> list[tuple[str, WebhookHandler]]:
        """Routes the console serves for this adapter: the webhook, in webhook mode."""
        if self.settings.mode != "webhook":
            return []
        return [(self.settings.webhook_path, self.receive_webhook)]

    async def receive_webhook(self, headers: Mapping[str, str], body: bytes) -> int:
        """One webhook call from Telegram; returns the HTTP status to answer with.

        200 only once the update is stored: any other answer makes Telegram send it again.
        """
        given = headers.get("x-telegram-bot-api-secret-token", "")
        if not self.webhook_secret or not hmac.compare_digest(
            given.encode(), self.webhook_secret.encode()
        ):
            return 403
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise MalformedUpdate("not a JSON object")
            update = Update.de_json(data, self.bot)
        except (
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            RecursionError,
            OverflowError,  # a date far outside what a timestamp can be
        ) as exc:
            logger.warning("Telegram webhook: malformed update refused (%s)", type(exc).__name__)
            return 400  # Telegram never sends these; a stranger might
        if update is None:
            return 400
        try:
            await self.handle(update)
        except MalformedUpdate as exc:
            logger.warning("Telegram webhook: update %s refused: %s", update.update_id, exc)
            return 400
        except Exception:
            logger.exception("Telegram update %s not stored; Telegram will retry", update.update_id)
            return 503
        return 200

    async def handle(self, update: Update) -> None:
        """Hand one update to the inbox. Raises when the inbox could not take it."""
        inbox = self._inbox
        assert inbox is not None, "start() first"
        if update.my_chat_member is not None:
            _check_membership(update.my_chat_member)
            await self._membership(inbox, update)
            return
        message = update.message or update.edited_message
        if message is not None:
            _check(message)
        if message is None or message.chat.type not in ("private", "group", "supergroup"):
            return  # channel posts, reactions...: not conversations we watch
        if message.migrate_to_chat_id is not None:
            await inbox.move_channel(
                PLATFORM, str(message.chat.id), str(message.migrate_to_chat_id)
            )
            return
        ref = self._channel(message)
        if update.edited_message is not None:
            text = message.text or message.caption
            if text is not None:
                author = message.from_user
                await inbox.edit(
                    MessageEdit(
                        ref, str(message.message_id), text, str(author.id) if author else None
                    )
                )
            return
        command = self._command(message)
        if command is not None:
            await self._command_handler(inbox, message, ref, *command)
            return
        incoming = self._incoming(message, ref)
        if incoming is not None:
            await inbox.ingest(incoming)

    def _channel(self, message: Message) -> ChannelRef:
        chat = message.chat
        if chat.type == "private":
            user = message.from_user
            name = user.full_name if user else "someone"
            return ChannelRef(PLATFORM, str(chat.id), f"Private chat with {name}", kind="direct")
        return ChannelRef(PLATFORM, str(chat.id), chat.title or f"Telegram group {chat.id}")

    def _incoming(self, message: Message, ref: ChannelRef) -> IncomingMessage | None:
        user = message.from_user
        if user is not None and user.is_bot and user.id != ANONYMOUS_ADMIN_ID:
            return None  # other bots (and our own messages) are not people asking
        text = message.text or message.caption or ""
        if not text:
            if ref.kind != "direct":
                return None  # a sticker in a group says nothing to answer
            text = next((label for attr, label in _MEDIA.items() if getattr(message, attr)), "")
            if not text:
                return None
        if message.sender_chat is not None:
            author_id, author_name = str(message.sender_chat.id), message.sender_chat.title or ""
        elif user is not None:
            author_id, author_name = str(user.id), user.full_name
        else:
            return None
        reply_to = message.reply_to_message
        return IncomingMessage(
            channel=ref,
            message_id=str(message.message_id),
            author_id=author_id,
            author_name=author_name,
            text=text,
            sent_at=_when(message),
            reply_to_message_id=str(reply_to.message_id) if reply_to else None,
        )

    async def _membership(self, inbox: Inbox, update: Update) -> None:
        """The bot was removed from a group: that is an opt-out by whoever removed it."""
        change = update.my_chat_member
        assert change is not None
        if change.new_chat_member.status not in ("left", "kicked"):
            return
        chat = change.chat
        ref = ChannelRef(PLATFORM, str(chat.id), chat.title or str(chat.id))
        await inbox.opt_out(
            OptOut(channel=ref, admin_id=str(change.from_user.id), at=utcnow(), notify=False)
        )

    # -- commands ---------------------------------------------------------------------

    def _command(self, message: Message) -> tuple[str, list[str]] | None:
        """(/command, arguments) if the message is one of ours, addressed to us."""
        text = message.text or ""
        if not text.startswith("/"):
            return None
        head, *args = text.split()
        name, _, target = head[1:].partition("@")
        if target and self.username and target.casefold() != self.username.casefold():
            return None  # a command for another bot in the group
        if name.casefold() not in COMMANDS:
            return None
        return name.casefold(), [a.casefold() for a in args]

    async def _command_handler(
        self, inbox: Inbox, message: Message, ref: ChannelRef, name: str, args: list[str]
    ) -> None:
        language = next((a for a in args if a in LANGUAGES), None)
        if name in ("optin", "optout"):
            if ref.kind == "direct":
                await self._answer(message, "Use /optin or /optout in the group itself.")
                return
            if not await self.is_admin(message):
                await self._answer(message, f"Only an admin of this group can use /{name}.")
                return
            admin = message.from_user
            admin_id = str(admin.id) if admin else str(message.chat.id)
            if name == "optin":
                request = OptIn(
                    channel=ChannelRef(ref.platform, ref.chat_id, ref.title, language=language),
                    admin_id=admin_id,
                    admin_name=admin.full_name if admin else "",
                    at=utcnow(),
                )
                if not await inbox.opt_in(request):
                    await self._answer(message, "peerdesk already watches this group.")
            elif not await inbox.opt_out(OptOut(channel=ref, admin_id=admin_id, at=utcnow())):
                await self._answer(message, "peerdesk is not watching this group.")
            return
        if name == "privacy":
            await self._privacy(inbox, message, ref, args, language)
            return
        if name in ("link", "unlink"):
            await self._link(inbox, message, ref, name, args)
            return
        # /start and /help: a private chat with the bot begins; say what it is. From now
        # on Telegram lets the bot write to this person.
        if ref.kind == "direct":
            if message.from_user is not None:
                await inbox.reachable(PLATFORM, str(message.from_user.id))
            await self._answer(message, inbox.text("privacy_notice", language))

    async def _link(
        self, inbox: Inbox, message: Message, ref: ChannelRef, name: str, args: list[str]
    ) -> None:
        """``/link CODE`` and ``/unlink``: a volunteer's own account for urgent alerts."""
        user = message.from_user
        if user is None or user.is_bot:
            return
        if name == "unlink":
            answer = await inbox.unlink_account(PLATFORM, str(user.id))
        elif not args:
            answer = "Send /link followed by the code from your account page in the console."
        else:
            answer = await inbox.link_account(
                PLATFORM, str(user.id), "".join(args), private=ref.kind == "direct"
            )
        await self._answer(message, answer)

    async def is_admin(self, message: Message) -> bool:
        """Whether the sender may switch peerdesk on or off in this group (asked of
        Telegram with getChatMember at the moment of the command)."""
        if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
            return True  # an admin posting anonymously as the group
        if message.from_user is None:
            return False
        member = await self.bot.get_chat_member(message.chat.id, message.from_user.id)
        return member.status in ADMIN_STATUSES

    async def _privacy(
        self,
        inbox: Inbox,
        message: Message,
        ref: ChannelRef,
        args: list[str],
        language: str | None,
    ) -> None:
        user = message.from_user
        action = next((a for a in args if a in ("export", "delete")), "info")
        if action == "info" or user is None:
            await self._answer(message, inbox.text("privacy_notice", language))
            return
        user_id = str(user.id)
        if action == "delete":
            counts = await inbox.erase_person(PLATFORM, user_id)
            await self._answer(
                message,
                "Done: everything peerdesk kept about you is erased "
                f"({counts.get('messages', 0)} messages, {counts.get('cases', 0)} conversations).",
            )
            return
        data = await inbox.export_person(PLATFORM, user_id)
        text = "What peerdesk keeps about you:\n" + json.dumps(data, ensure_ascii=False, indent=1)
        try:
            for part in split_text(text, self.max_text_chars):
                await self.bot.send_message(chat_id=user.id, text=part)
        except Forbidden:
            await self._answer(
                message,
                "I cannot write to you privately yet: open https://t.me/"
                f"{self.username}, press Start, and ask again with /privacy export.",
            )
            return
        if ref.kind != "direct":
            await self._answer(message, "I sent you what peerdesk keeps, in a private chat.")

    async def _answer(self, message: Message, text: str) -> None:
        """Answer a command in the chat it came from with one of our fixed texts. Failing
        to answer loses nothing."""
        try:
            await self.bot.send_message(
                chat_id=message.chat.id,
                text=text,
                reply_parameters=ReplyParameters(
                    message_id=message.message_id, allow_sending_without_reply=True
                ),
            )
        except TelegramError as exc:
            logger.warning("could not answer a command in chat %s: %s", message.chat.id, exc)

    # -- sending ----------------------------------------------------------------------

    def escape(self, text: str) -> str:
        # Replies go out as plain text (no parse_mode), so no markup can be injected;
        # only mentions remain to be defused.
        return _MENTION.sub("@\u2060", text)

    def private_refusal(self, direct_ok: bool | None) -> str | None:
        if direct_ok:
            return None
        if direct_ok is False:
            return "this person blocked the bot or closed their private chat with it"
        return (
            "this person never wrote to the bot privately, and Telegram does not let a bot "
            "write first; reply in the group, perhaps inviting them to message the bot"
        )

    async def send(self, message: OutgoingMessage) -> str:
        private = message.visibility is Visibility.PRIVATE
        chat_id = message.recipient_id if private else message.channel.chat_id
        if chat_id is None:
            raise PermanentDeliveryError("no address to send to")
        reply = None
        if message.reply_to_message_id and not private:
            reply = ReplyParameters(
                message_id=int(message.reply_to_message_id), allow_sending_without_reply=True
            )
        try:
            sent = await self.bot.send_message(
                chat_id=int(chat_id),
                text=message.text,
                reply_parameters=reply,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except RetryAfter as exc:
            raise RateLimited(str(exc), retry_after=_retry_after(exc)) from exc
        except ChatMigrated as exc:
            assert self._inbox is not None
            await self._inbox.move_channel(PLATFORM, str(chat_id), str(exc.new_chat_id))
            raise PlatformUnavailable("the group moved to a new id; retrying there") from exc
        except TimedOut as exc:
            # Telegram may have posted it before the answer was lost: see docs/platforms.md.
            raise PlatformUnavailable(f"Telegram did not answer in time: {exc}") from exc
        except Forbidden as exc:
            if private:
                raise RecipientUnreachable(
                    f"Telegram refused the private message: {exc.message}"
                ) from exc
            raise PermanentDeliveryError(
                f"the bot may no longer write in this group: {exc.message}"
            ) from exc
        except BadRequest as exc:
            raise PermanentDeliveryError(f"Telegram refused the message: {exc.message}") from exc
        except InvalidToken as exc:
            raise PlatformUnavailable("Telegram no longer accepts the bot token") from exc
        except NetworkError as exc:
            raise PlatformUnavailable(f"Telegram unavailable: {exc.message}") from exc
        return str(sent.message_id)


def _retry_after(exc: RetryAfter) -> float:
    """Seconds Telegram asked us to wait (read without PTB's int-to-timedelta warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)

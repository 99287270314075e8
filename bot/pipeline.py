"""From an adapter's message to a stored, detected case with suggestions.

ingest: only opted-in channels -> persist first (deduplicated) -> detect -> attach to the
thread's open case or open a new one -> suggestions from the FAQ. A message stored but
not yet detected (a crash in between) is picked up by :meth:`Pipeline.recover`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from bot import private_alerts
from bot.detector import MessageDetector
from bot.events import Broadcaster, CaseEvent, CaseEventKind
from bot.faq import FAQ
from bot.models import (
    Channel,
    ChannelRef,
    Detection,
    IncomingMessage,
    MessageDeletion,
    MessageEdit,
    OptIn,
    OptOut,
    StoredMessage,
    utcnow,
)
from bot.private_alerts import PrivateAlerts
from bot.pseudonym import Pseudonymizer
from bot.settings import Settings
from bot.store import AlreadyProcessed, Store, SuggestionRow
from knowledge_base import Hit
from prompts import NOTICE_VERSION, Prompts

logger = logging.getLogger(__name__)

# Longer texts are cut before storage: no chat platform allows more, and a bigger one is
# an attack or a paste, not a question.
MAX_TEXT_CHARS = 8000
MAX_QUERY_CHARS = 2000


def server_chat_id(server_id: str) -> str:
    """The channel row that stands for a whole server's opt-in."""
    return f"server:{server_id}"


def scrub(text: str) -> str:
    """Text a database can store: no NUL (PostgreSQL refuses it), and a lone surrogate
    (possible in JSON as an escape, never valid Unicode) replaced by U+FFFD."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def clean_text(text: str) -> str:
    """Chat text as it is stored: scrubbed, cut at MAX_TEXT_CHARS."""
    text = scrub(text)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + "…"
    return text


def clean_ref(ref: ChannelRef) -> ChannelRef:
    """A channel as it is stored: its title is chat text too (no NUL bytes, which
    PostgreSQL refuses)."""
    title = scrub(ref.title)
    return ref if title == ref.title else replace(ref, title=title)


def _why(hit: Hit) -> tuple[str, ...]:
    """What a volunteer sees as the reason for a suggestion: the shared words, and the
    question variant closest in meaning."""
    similar = (f'close to "{hit.variant}"',) if hit.variant else ()
    return (*hit.why, *similar)


@dataclass(frozen=True)
class IngestResult:
    message_id: int
    created: bool  # False: this message was already stored (a redelivery)
    detection: Detection | None
    case_id: int | None


# What the bot answers to /link and /unlink (volunteers; the console is where they read
# the rest in their language).
LINK_ANSWERS = {
    "off": "Urgent alerts by private message are switched off in this peerdesk.",
    "not_private": "Send /link CODE to me in a private chat, not in a group. That code no "
    "longer works: get a new one on your account page in the console.",
    "unknown": "This code is unknown, used or expired. Get a new one on your account page "
    f"in the console: a code works once, for {private_alerts.LINK_CODE_MINUTES} minutes.",
    "linked": "Linked to {username}. While you are on duty, urgent cases nobody has claimed "
    "will alert you here. Send /unlink to stop.",
    "unlinked": "Unlinked: no more urgent alerts here.",
    "not_linked": "This account is not linked to anyone in peerdesk.",
}


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        detector: MessageDetector,
        faq: FAQ,
        pseudonymize: Pseudonymizer,
        prompts: Prompts,
        settings: Settings,
        events: Broadcaster | None = None,
        alerts: PrivateAlerts | None = None,
    ) -> None:
        self.store = store
        self.events = events
        # Urgent alerts by private message to the volunteers on duty (bot.private_alerts).
        self.alerts = alerts
        self.detector = detector
        self.faq = faq
        self.pseudonymize = pseudonymize
        self.prompts = prompts
        self.settings = settings

    async def _filed_elsewhere(
        self, message_id: int, detection: Detection
    ) -> tuple[Detection, int | None]:
        """Another worker processed the message while this one detected it: that one
        published and alerted; this one answers with the case the message is in."""
        logger.debug("message %s was processed by another worker", message_id)
        return detection, (await self.store.get_message(message_id)).case_id

    def _publish(self, kind: CaseEventKind, case_id: int, *, urgent: bool = False) -> None:
        if self.events is not None:
            self.events.publish(CaseEvent(kind, case_id, urgent=urgent))

    def text(self, name: str, language: str | None, **context: Any) -> str:
        """One of the bot's fixed texts (``prompts/``) in ``language``."""
        return self.prompts.render(
            name, language or self.settings.general.default_language, **context
        )

    async def opt_in(self, request: OptIn) -> bool:
        """Record consent for a channel (or a whole server) and queue the opt-in notice in
        its language. Returns False when it was opted in already."""
        ref = clean_ref(request.channel)
        notice = self.text("optin_notice", ref.language, channel_title=ref.title)
        admin = self.pseudonymize(ref.platform, request.admin_id)
        channel, changed = await self.store.opt_in(
            ref, consent_by=admin, at=request.at, notice=notice
        )
        if changed:
            logger.info("channel %s opted in (notice %s)", channel.id, NOTICE_VERSION)
        return changed

    async def opt_out(self, request: OptOut) -> bool:
        """Stop watching a channel (purging it per ``privacy.purge_on_optout``) and queue
        the confirmation. Returns False when it was not being watched.

        A whole server's opt-out also stops every channel its opt-in took in; a channel
        watched only through its server's opt-in can be opted out on its own, and stays
        out.
        """
        ref = clean_ref(request.channel)
        existing = await self.store.get_channel(ref.platform, ref.chat_id)
        if (existing is None or not existing.opted_in) and ref.server_id is not None:
            server = await self.store.get_channel(ref.platform, server_chat_id(ref.server_id))
            if server is not None and server.opted_in and existing is None:
                # Record the channel (under the server's consent) so that it can be out.
                existing, _ = await self.store.opt_in(
                    replace(ref, language=ref.language or server.language),
                    consent_by=server.consent_by or "",
                    at=request.at,
                    notice=None,
                )
        language = (existing.language if existing else None) or ref.language
        notice = self.text("optout_confirmation", language, channel_title=ref.title)
        by = self.pseudonymize(ref.platform, request.admin_id)
        purge = self.settings.privacy.purge_on_optout
        channel = await self.store.opt_out(
            ref, by=by, at=request.at, purge=purge, notice=notice if request.notify else None
        )
        if channel is None:
            return False
        logger.info("channel %s opted out", channel.id)
        if channel.kind == "server" and channel.chat_id.startswith("server:"):
            server_id = channel.chat_id.removeprefix("server:")
            for member in await self.store.server_channels(ref.platform, server_id):
                await self.store.opt_out(
                    member.ref(), by=by, at=request.at, purge=purge, notice=None
                )
        return True

    async def _watched(self, ref: ChannelRef, author: str) -> Channel | None:
        """The stored channel a message comes from, if the bot may keep its messages.

        A direct chat with the bot is consent in itself. A channel in a server that opted
        in as a whole is taken in at its first message, unless it opted out on its own.
        """
        channel = await self.store.get_channel(ref.platform, ref.chat_id)
        if channel is not None and channel.opted_in:
            # A coordinator paused watching it (console Channels page): not read.
            return None if channel.paused else channel
        if ref.kind == "direct":
            channel, _ = await self.store.opt_in(ref, consent_by=author, at=utcnow(), notice=None)
            return channel
        # A channel row that is not opted in was opted out on its own: that wins.
        if ref.server_id is None or channel is not None:
            return None
        server = await self.store.get_channel(ref.platform, server_chat_id(ref.server_id))
        if server is None or not server.opted_in or server.paused:
            return None
        ref = replace(ref, language=ref.language or server.language)
        channel, _ = await self.store.opt_in(
            ref, consent_by=server.consent_by or "", at=utcnow(), notice=None
        )
        return channel

    async def ingest(self, message: IncomingMessage) -> IngestResult | None:
        """Take one message from an adapter. Returns None when the channel is not watched
        (nothing about the message is stored)."""
        ref = clean_ref(message.channel)
        author = self.pseudonymize(ref.platform, message.author_id)
        channel = await self._watched(ref, author)
        if channel is None:
            return None  # dropped before anything is stored
        if channel.watch_from is not None and message.sent_at < channel.watch_from:
            return None  # sent while watching was paused, delivered only now
        text = clean_text(message.text)
        # A display name is chat text too: PostgreSQL refuses NUL in text columns.
        name = scrub(message.author_name)[:200]
        if text != message.text or name != message.author_name:
            message = replace(message, text=text, author_name=name)
        message_id, created = await self.store.insert_message(channel.id, message, author)
        stored = await self.store.get_message(message_id)
        if not created and stored.detected:
            return IngestResult(message_id, False, None, stored.case_id)
        # New, or stored earlier but never processed (processing failed): process it now.
        # The message is safe in the store, so a failure here is not the platform's
        # problem: the recovery pass processes it later.
        try:
            detection, case_id = await self._process(stored, channel)
        except Exception:
            logger.exception("message %s stored but not processed; recovery will retry", message_id)
            return IngestResult(message_id, created, None, None)
        if case_id is not None:
            # Only people whose message is part of a case may get a private reply, so only
            # their platform address is kept. Writing to the bot directly shows the
            # platform lets the bot write back.
            await self.store.remember_contact(
                author,
                ref.platform,
                message.author_id,
                direct_ok=True if channel.kind == "direct" else None,
            )
        return IngestResult(message_id, created, detection, case_id)

    async def edit(self, edit: MessageEdit) -> bool:
        """An author edited a message: store the new text and detect it again. Returns
        False when the message was never stored, or its channel is no longer watched."""
        ref = edit.channel
        channel = await self.store.get_channel(ref.platform, ref.chat_id)
        if channel is None or not channel.opted_in or channel.paused:
            return False  # an opted-out channel's new words are not kept, edits neither
        stored = await self.store.edit_message(
            channel.id, edit.message_id, clean_text(edit.text), at=utcnow()
        )
        if stored is None:
            return False
        _, case_id = await self._process(stored, channel)
        if case_id is not None and edit.author_id is not None:
            await self.store.remember_contact(
                stored.author,
                ref.platform,
                edit.author_id,
                direct_ok=True if channel.kind == "direct" else None,
            )
        return True

    async def delete(self, deletion: MessageDeletion) -> bool:
        """A message was deleted on the platform: its text leaves the case."""
        ref = deletion.channel
        channel = await self.store.get_channel(ref.platform, ref.chat_id)
        if channel is None:
            return False
        deleted = await self.store.delete_message(channel.id, deletion.message_id, at=utcnow())
        if deleted is not None and deleted.case_id is not None:
            self._publish(CaseEventKind.UPDATED, deleted.case_id)
        return deleted is not None

    async def move_channel(self, platform: str, old_chat_id: str, new_chat_id: str) -> None:
        """The platform gave a chat a new id (a Telegram group became a supergroup)."""
        await self.store.move_channel(platform, old_chat_id, new_chat_id)

    async def reachable(self, platform: str, user_id: str) -> None:
        """The person opened a private chat with the bot, so it may now write to them (a
        Telegram bot may not write first). Recorded only if their address is kept."""
        await self.store.set_direct_ok(self.pseudonymize(platform, user_id), True)

    async def link_account(
        self, platform: str, user_id: str, code: str, *, private: bool = True
    ) -> str:
        """``/link CODE``: a volunteer links their own account for urgent alerts (see
        :mod:`bot.private_alerts`). Returns the answer to show them. A code shown in a
        group (``private`` False) is spent without linking: others have seen it."""
        if not self.settings.console.private_alerts:
            return LINK_ANSWERS["off"]
        if not private:
            await private_alerts.discard(self.store, code)
            return LINK_ANSWERS["not_private"]
        user = await private_alerts.redeem(self.store, code, platform, user_id)
        if user is None:
            return LINK_ANSWERS["unknown"]
        logger.info("a volunteer linked their %s account for urgent alerts", platform)
        return LINK_ANSWERS["linked"].format(username=user.username)

    async def unlink_account(self, platform: str, user_id: str) -> str:
        """``/unlink``: this account gets no more urgent alerts. Returns the answer."""
        done = await private_alerts.unlink_account(self.store, platform, user_id)
        return LINK_ANSWERS["unlinked" if done else "not_linked"]

    async def export_person(self, platform: str, user_id: str) -> dict[str, Any]:
        """What is stored about one person (``/privacy export``)."""
        return await self.store.person_data(self.pseudonymize(platform, user_id))

    async def erase_person(self, platform: str, user_id: str) -> dict[str, int]:
        """Delete everything about one person (``/privacy delete``)."""
        counts = await self.store.erase_person(self.pseudonymize(platform, user_id))
        # A volunteer's own account linked for urgent alerts is theirs to erase too.
        if await private_alerts.unlink_account(self.store, platform, user_id):
            logger.info("erasure on request: the account no longer gets urgent alerts")
        logger.info("erased a person's data on request: %s", counts)
        return counts

    async def watched_channels(self, platform: str) -> list[tuple[ChannelRef, str | None]]:
        """Opted-in channels with the newest stored message id: where catch-up starts."""
        return [(c.ref(), last) for c, last in await self.store.watched_channels(platform)]

    async def recover(self) -> int:
        """Process messages that were stored but never processed. Returns how many were.

        One message that keeps failing is logged and skipped, so it cannot hold up the
        others; it is tried again at the next call.
        """
        recovered = 0
        for stored, channel in await self.store.undetected_messages():
            try:
                await self._process(stored, channel)
            except Exception:
                logger.exception("message %s could not be processed; will retry", stored.id)
            else:
                recovered += 1
        if recovered:
            logger.info("recovered %d stored but unprocessed messages", recovered)
        return recovered

    async def _process(
        self, stored: StoredMessage, channel: Channel
    ) -> tuple[Detection, int | None]:
        # The trained detector embeds the text: CPU work, kept off the event loop.
        detection = await asyncio.to_thread(self.detector.detect, stored.text)
        direct = channel.kind == "direct"
        notice = None
        if stored.case_id is not None:
            case_id: int | None = stored.case_id  # an edit of a message already in a case
        elif direct:
            # Everything said to the bot directly is a question for the volunteers.
            hours = self.settings.pipeline.direct_followup_hours
            case_id = await self.store.conversation_case(
                channel.id, active_since=utcnow() - timedelta(hours=hours)
            )
            if case_id is None:
                notice = self.text("dm_acknowledgement", detection.language)
        else:
            window = timedelta(minutes=self.settings.pipeline.case_window_minutes)
            case_id = await self.store.find_thread_case(
                channel.id,
                stored.author,
                reply_to_message_id=stored.reply_to_message_id,
                active_since=utcnow() - window,
            )
        if not detection.flagged and case_id is None and not direct:
            try:
                await self.store.record_detection(stored.id, detection)
            except AlreadyProcessed:
                return await self._filed_elsewhere(stored.id, detection)
            return detection, None
        known_case = case_id is not None
        suggestions = None
        if detection.flagged or direct:
            # A follow-up is searched together with what the case already asked, so the
            # suggestions cover the whole conversation, not only its latest line.
            earlier = await self.store.case_flagged_texts(case_id) if case_id else []
            # The newest words count most; a long thread is cut from the front.
            query = " ".join([*earlier, stored.text])[-MAX_QUERY_CHARS:]
            hits = await self.faq.search_async(
                query, top=self.settings.pipeline.suggestions, language=detection.language
            )
            suggestions = [
                SuggestionRow(h.entry.id, rank, h.score, _why(h))
                for rank, h in enumerate(hits, start=1)
            ] or None  # nothing matched: keep what the case had
        try:
            case_id = await self.store.file_message(
                stored.id,
                detection,
                case_id=case_id,
                suggestions=suggestions,
                notice=notice,
                reopen=direct and stored.case_id is None,
            )
        except AlreadyProcessed:
            return await self._filed_elsewhere(stored.id, detection)
        self._publish(
            CaseEventKind.UPDATED if known_case else CaseEventKind.OPENED,
            case_id,
            urgent=detection.urgent,
        )
        if detection.urgent and self.alerts is not None:
            try:
                await self.alerts.alert(case_id)
            except Exception:  # the message is filed; the minute's check alerts again
                logger.exception("urgent alerts for case %s not queued", case_id)
        return detection, case_id

"""From an adapter's message to a stored, detected case with suggestions.

ingest: only opted-in channels -> persist first (deduplicated) -> detect -> attach to the
thread's open case or open a new one -> suggestions from the FAQ. A message stored but
not yet detected (a crash in between) is picked up by :meth:`Pipeline.recover`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from bot.detector import Detector
from bot.faq import FAQ
from bot.models import Channel, Detection, IncomingMessage, OptIn, StoredMessage, utcnow
from bot.pseudonym import Pseudonymizer
from bot.settings import Settings
from bot.store import Store, SuggestionRow
from knowledge_base import Hit
from prompts import NOTICE_VERSION, Prompts

logger = logging.getLogger(__name__)

# Longer texts are cut before storage: no chat platform allows more, and a bigger one is
# an attack or a paste, not a question.
MAX_TEXT_CHARS = 8000
MAX_QUERY_CHARS = 2000


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


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        detector: Detector,
        faq: FAQ,
        pseudonymize: Pseudonymizer,
        prompts: Prompts,
        settings: Settings,
    ) -> None:
        self.store = store
        self.detector = detector
        self.faq = faq
        self.pseudonymize = pseudonymize
        self.prompts = prompts
        self.settings = settings

    async def opt_in(self, request: OptIn) -> None:
        """Record consent for a channel and queue the opt-in notice in its language."""
        language = request.channel.language or self.settings.general.default_language
        notice = self.prompts.render("optin_notice", language, channel_title=request.channel.title)
        admin = self.pseudonymize(request.channel.platform, request.admin_id)
        channel, changed = await self.store.opt_in(
            request.channel, consent_by=admin, at=request.at, notice=notice
        )
        if changed:
            logger.info("channel %s opted in (notice %s)", channel.id, NOTICE_VERSION)

    async def ingest(self, message: IncomingMessage) -> IngestResult | None:
        """Take one message from an adapter. Returns None when the channel is not opted in."""
        ref = message.channel
        channel = await self.store.get_channel(ref.platform, ref.chat_id)
        if channel is None or not channel.opted_in:
            return None  # dropped before anything is stored
        text = message.text.replace("\x00", "")
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + "…"
        if text != message.text:
            message = IncomingMessage(
                channel=message.channel,
                message_id=message.message_id,
                author_id=message.author_id,
                author_name=message.author_name[:200],
                text=text,
                sent_at=message.sent_at,
                reply_to_message_id=message.reply_to_message_id,
            )
        author = self.pseudonymize(ref.platform, message.author_id)
        message_id, created = await self.store.insert_message(channel.id, message, author)
        stored = await self.store.get_message(message_id)
        if not created and stored.detected:
            return IngestResult(message_id, False, None, stored.case_id)
        # New, or stored earlier but never processed (processing failed): process it now.
        detection, case_id = await self._process(stored, channel)
        if case_id is not None:
            # Only people whose message is part of a case may get a private reply, so only
            # their platform address is kept.
            await self.store.remember_contact(author, ref.platform, message.author_id)
        return IngestResult(message_id, created, detection, case_id)

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
        detection = self.detector.detect(stored.text)
        window = timedelta(minutes=self.settings.pipeline.case_window_minutes)
        case_id = await self.store.find_thread_case(
            channel.id,
            stored.author,
            reply_to_message_id=stored.reply_to_message_id,
            active_since=utcnow() - window,
        )
        if not detection.flagged and case_id is None:
            await self.store.record_detection(stored.id, detection)
            return detection, None
        suggestions = None
        if detection.flagged:
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
        case_id = await self.store.file_message(
            stored.id, detection, case_id=case_id, suggestions=suggestions
        )
        return detection, case_id

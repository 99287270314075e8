"""Fakes of our seams, recording what they were asked to do (no mocks)."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

import numpy as np

from bot.adapter import Adapter, Inbox
from bot.models import ChannelRef, IncomingMessage, OptIn, OutgoingMessage
from bot.pipeline import IngestResult
from knowledge_base.embedder import Embedder


class FakeAdapter(Adapter):
    """Records every send; ``failures`` holds exceptions to raise on the next sends."""

    def __init__(self, platform: str = "fake", *, private: bool = True) -> None:
        self.platform = platform
        self.private = private
        self.sent: list[OutgoingMessage] = []
        self.failures: deque[Exception] = deque()
        self.started = False

    async def start(self, inbox: Inbox) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def private_refusal(self, direct_ok: bool | None) -> str | None:
        if not self.private:
            return "private messages are not possible on this platform"
        return "this person refused private messages" if direct_ok is False else None

    async def send(self, message: OutgoingMessage) -> str:
        if self.failures:
            raise self.failures.popleft()
        self.sent.append(message)
        return f"sent-{len(self.sent)}"


class RecordingInbox:
    """An inbox that keeps what adapters hand it."""

    def __init__(self) -> None:
        self.messages: list[IncomingMessage] = []
        self.opt_ins: list[OptIn] = []

    async def ingest(self, message: IncomingMessage) -> IngestResult | None:
        self.messages.append(message)
        return None

    async def opt_in(self, request: OptIn) -> None:
        self.opt_ins.append(request)


def channel(chat_id: str = "chat-1", *, language: str | None = "nl") -> ChannelRef:
    return ChannelRef(platform="fake", chat_id=chat_id, title=f"Group {chat_id}", language=language)


def message(
    text: str,
    message_id: str = "1",
    *,
    chat: ChannelRef | None = None,
    author: str = "user-1",
    reply_to: str | None = None,
) -> IncomingMessage:
    return IncomingMessage(
        channel=chat or channel(),
        message_id=message_id,
        author_id=author,
        author_name=f"Name {author}",
        text=text,
        sent_at=datetime.now(UTC),
        reply_to_message_id=reply_to,
    )


def opt_in(chat: ChannelRef | None = None) -> OptIn:
    return OptIn(
        channel=chat or channel(), admin_id="admin-1", admin_name="Admin", at=datetime.now(UTC)
    )


class FakeEmbedder(Embedder):
    """Bag-of-words vectors over a fixed vocabulary: deterministic, and counts its calls."""

    def __init__(self, name: str = "fake", vocabulary: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.name = name
        self.vocabulary = vocabulary or (
            "xtc",
            "alcohol",
            "coke",
            "festival",
            "water",
            "hoelang",
            "mix",
            "slaap",
        )
        self.calls: list[list[str]] = []

    def _load(self) -> object:
        return self

    def _encode(self, model: object, texts: list[str], *, query: bool) -> object:
        self.calls.append(texts)
        rows = []
        for text in texts:
            words = text.lower().split()
            row = [float(sum(w.startswith(v) for w in words)) for v in self.vocabulary]
            rows.append([*row, 0.01])  # never all zero
        return np.array(rows, dtype=np.float32)

    @property
    def embedded(self) -> int:
        return sum(len(c) for c in self.calls)

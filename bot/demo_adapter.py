"""A scripted demo platform: three opted-in groups where invented people chat.

It plays ``data/demo_script.toml`` at a steady pace and records everything said in it,
by people and by the bot, in a JSONL transcript that the console shows. The transcript is
the demo platform's own memory: after a restart the script continues where it stopped,
and sends are recognised by their key, so a retried delivery is not posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.adapter import Adapter, Inbox, PermanentDeliveryError
from bot.models import ChannelRef, IncomingMessage, OptIn, OutgoingMessage, Visibility, utcnow

logger = logging.getLogger(__name__)

PLATFORM = "demo"
DEFAULT_SCRIPT = Path(__file__).parent / "data" / "demo_script.toml"
DEMO_ADMIN = "demo-admin"


@dataclass(frozen=True)
class ScriptLine:
    channel: str
    author: str
    text: str


@dataclass(frozen=True)
class TranscriptLine:
    id: int
    at: str
    channel: str
    author: str
    text: str
    from_bot: bool = False
    reply_to: int | None = None
    private_to: str | None = None
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _author_id(name: str) -> str:
    return f"demo-user-{name.casefold()}"


class DemoAdapter(Adapter):
    platform = PLATFORM

    def __init__(
        self,
        *,
        transcript_path: Path,
        interval_seconds: float,
        script_path: Path = DEFAULT_SCRIPT,
    ) -> None:
        self.transcript_path = transcript_path
        self.interval = interval_seconds
        self.script_path = script_path
        self.channels: dict[str, ChannelRef] = {}
        self.lines: list[ScriptLine] = []
        self._transcript: list[TranscriptLine] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.finished = asyncio.Event()

    def private_refusal(self, direct_ok: bool | None) -> str | None:
        return None  # everyone in the demo accepts private messages

    def transcript(self) -> list[TranscriptLine]:
        return list(self._transcript)

    def _load(self) -> None:
        data = tomllib.loads(self.script_path.read_text(encoding="utf-8"))
        self.channels = {
            key: ChannelRef(
                platform=PLATFORM,
                chat_id=f"demo-{key}",
                title=spec["title"],
                language=spec.get("language"),
            )
            for key, spec in data["channels"].items()
        }
        self.lines = [ScriptLine(**line) for line in data["lines"]]
        self._transcript = []
        if not self.transcript_path.exists():
            return
        content = self.transcript_path.read_bytes()
        if content and not content.endswith(b"\n"):
            # The demo was killed mid-write: drop the half line, so the next line starts
            # on a line of its own.
            content = content[: content.rfind(b"\n") + 1]
            with self.transcript_path.open("r+b") as fh:
                fh.truncate(len(content))
        for raw in content.splitlines():
            if raw.strip():
                with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError, TypeError):
                    self._transcript.append(TranscriptLine(**json.loads(raw.decode("utf-8"))))

    def _append(self, line: TranscriptLine) -> None:
        self.transcript_path.parent.mkdir(parents=True, exist_ok=True)
        with self.transcript_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line.as_dict(), ensure_ascii=False) + "\n")
            fh.flush()
        self._transcript.append(line)

    def _next_id(self) -> int:
        return max((line.id for line in self._transcript), default=0) + 1

    def _incoming(self, line: TranscriptLine) -> IncomingMessage:
        return IncomingMessage(
            channel=self.channels[line.channel],
            message_id=str(line.id),
            author_id=_author_id(line.author),
            author_name=line.author,
            text=line.text,
            sent_at=datetime.fromisoformat(line.at),
        )

    async def start(self, inbox: Inbox) -> None:
        await asyncio.to_thread(self._load)
        for channel in self.channels.values():
            await inbox.opt_in(
                OptIn(channel=channel, admin_id=DEMO_ADMIN, admin_name="Demo admin", at=utcnow())
            )
        # Like a platform's history: hand over everything said so far. Messages already
        # stored are recognised and skipped, so nothing said while we were down is missed.
        for line in self._transcript:
            if not line.from_bot:
                await inbox.ingest(self._incoming(line))
        self._task = asyncio.create_task(self._play(inbox), name="demo-adapter")

    async def _play(self, inbox: Inbox) -> None:
        played = sum(1 for line in self._transcript if not line.from_bot)
        for script_line in self.lines[played:]:
            await asyncio.sleep(self.interval)
            async with self._lock:
                line = TranscriptLine(
                    id=self._next_id(),
                    at=utcnow().isoformat(),
                    channel=script_line.channel,
                    author=script_line.author,
                    text=script_line.text,
                )
                self._append(line)
            try:
                await inbox.ingest(self._incoming(line))
            except Exception:
                # The next start hands the transcript over again; nothing is lost.
                logger.exception("demo message %s not ingested", line.id)
        self.finished.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def send(self, message: OutgoingMessage) -> str:
        channel = next(
            (key for key, ref in self.channels.items() if ref.chat_id == message.channel.chat_id),
            None,
        )
        if channel is None:
            raise PermanentDeliveryError(f"no demo channel {message.channel.chat_id!r}")
        async with self._lock:
            for line in self._transcript:
                if line.key == message.key:
                    return str(line.id)  # a retry of a delivery that already happened
            private_to = None
            if message.visibility is Visibility.PRIVATE:
                private_to = next(
                    (s.author for s in self.lines if _author_id(s.author) == message.recipient_id),
                    message.recipient_id,
                )
            line = TranscriptLine(
                id=self._next_id(),
                at=utcnow().isoformat(),
                channel=channel,
                author="peerdesk",
                text=message.text,
                from_bot=True,
                reply_to=int(message.reply_to_message_id) if message.reply_to_message_id else None,
                private_to=private_to,
                key=message.key,
            )
            await asyncio.to_thread(self._append, line)
        return str(line.id)

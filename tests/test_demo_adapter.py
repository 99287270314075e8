"""The scripted demo platform: opt-ins, playback, the JSONL transcript, restarts and sends."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.adapter import PermanentDeliveryError
from bot.demo_adapter import DEFAULT_SCRIPT, DemoAdapter
from bot.models import ChannelRef, IncomingMessage, OutgoingMessage, Visibility
from tests.fakes import RecordingInbox

SCRIPT: dict[str, Any] = tomllib.loads(DEFAULT_SCRIPT.read_text(encoding="utf-8"))
SCRIPT_LINES: list[dict[str, str]] = SCRIPT["lines"]
WAIT = 5.0  # seconds; generous upper bound for a script played with interval 0

MakeAdapter = Callable[..., DemoAdapter]


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    return tmp_path / "demo" / "transcript.jsonl"


@pytest.fixture
async def make_adapter(transcript: Path) -> AsyncIterator[MakeAdapter]:
    """Builds adapters on the test's transcript and stops every one of them afterwards."""
    made: list[DemoAdapter] = []

    def make(*, interval: float = 0.0, path: Path | None = None) -> DemoAdapter:
        adapter = DemoAdapter(transcript_path=path or transcript, interval_seconds=interval)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.stop()


class GatedInbox(RecordingInbox):
    """Records like RecordingInbox, but the ``gate``-th ingest never returns."""

    def __init__(self, gate: int) -> None:
        super().__init__()
        self.gate = gate
        self.reached = asyncio.Event()

    async def ingest(self, message: IncomingMessage) -> None:
        await super().ingest(message)
        if len(self.messages) == self.gate:
            self.reached.set()
            await asyncio.Event().wait()  # blocks until cancelled


def read_transcript(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "at"} for row in rows]


def script_rows(start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """What the transcript should hold for script lines [start:stop], ids counted from 1."""
    return [
        {
            "id": i,
            "channel": line["channel"],
            "author": line["author"],
            "text": line["text"],
            "from_bot": False,
        }
        for i, line in enumerate(SCRIPT_LINES[:stop], start=1)
        if i > start
    ]


async def play(adapter: DemoAdapter, inbox: RecordingInbox) -> None:
    await adapter.start(inbox)
    await asyncio.wait_for(adapter.finished.wait(), WAIT)


def outgoing(
    adapter: DemoAdapter,
    key: str,
    *,
    channel: str = "gent",
    text: str = "Een antwoord.",
    visibility: Visibility = Visibility.PUBLIC,
    reply_to: str | None = "1",
    recipient_id: str | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        channel=adapter.channels[channel],
        text=text,
        visibility=visibility,
        reply_to_message_id=reply_to,
        recipient_id=recipient_id,
    )


# -- start and playback -------------------------------------------------------------------


async def test_start_opts_in_every_channel_with_its_language(make_adapter: MakeAdapter) -> None:
    inbox = RecordingInbox()
    adapter = make_adapter(interval=3600)
    await adapter.start(inbox)

    got = sorted((o.channel.chat_id, o.channel.language, o.channel.platform) for o in inbox.opt_ins)
    assert got == [
        ("demo-brussels", "en", "demo"),
        ("demo-gent", "nl", "demo"),
        ("demo-lille", "fr", "demo"),
    ]
    assert [o.admin_id for o in inbox.opt_ins] == ["demo-admin"] * 3
    assert inbox.messages == []  # the first line waits for the (long) interval


async def test_script_is_played_in_order_into_the_inbox(make_adapter: MakeAdapter) -> None:
    inbox = RecordingInbox()
    adapter = make_adapter()
    await play(adapter, inbox)

    got = [(m.channel.chat_id, m.author_name, m.text) for m in inbox.messages]
    expected = [(f"demo-{s['channel']}", s["author"], s["text"]) for s in SCRIPT_LINES]
    assert got == expected
    assert [m.message_id for m in inbox.messages] == [
        str(i) for i in range(1, len(SCRIPT_LINES) + 1)
    ]
    first = inbox.messages[0]
    assert first.author_id == f"demo-user-{SCRIPT_LINES[0]['author'].casefold()}"
    assert first.channel == adapter.channels[SCRIPT_LINES[0]["channel"]]


async def test_transcript_is_jsonl_with_one_line_per_message(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    inbox = RecordingInbox()
    adapter = make_adapter()
    await play(adapter, inbox)

    rows = read_transcript(transcript)
    assert without_time(rows) == script_rows()
    assert all(isinstance(row["at"], str) and row["at"] for row in rows)
    assert [m.sent_at.isoformat() for m in inbox.messages] == [row["at"] for row in rows]
    assert [line.id for line in adapter.transcript()] == [row["id"] for row in rows]


# -- restarts -----------------------------------------------------------------------------


async def test_restart_after_the_whole_script_replays_nothing_new(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    first_inbox = RecordingInbox()
    await play(make_adapter(), first_inbox)
    before = transcript.read_text(encoding="utf-8")

    second_inbox = RecordingInbox()
    await play(make_adapter(), second_inbox)

    assert transcript.read_text(encoding="utf-8") == before
    # The history is handed over again, with the same ids, so the pipeline can dedupe.
    assert [(m.message_id, m.text, m.sent_at) for m in second_inbox.messages] == [
        (m.message_id, m.text, m.sent_at) for m in first_inbox.messages
    ]


async def test_restart_mid_script_continues_where_it_stopped(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    gated = GatedInbox(gate=3)
    first = make_adapter()
    await first.start(gated)
    await asyncio.wait_for(gated.reached.wait(), WAIT)
    await first.stop()
    assert without_time(read_transcript(transcript)) == script_rows(0, 3)

    inbox = RecordingInbox()
    await play(make_adapter(), inbox)

    assert without_time(read_transcript(transcript)) == script_rows()
    assert [m.message_id for m in inbox.messages] == [
        str(i) for i in range(1, len(SCRIPT_LINES) + 1)
    ]
    assert [m.message_id for m in inbox.messages[:3]] == [m.message_id for m in gated.messages]


async def test_bot_lines_are_not_handed_over_and_do_not_shift_the_script(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    gated = GatedInbox(gate=2)
    first = make_adapter()
    await first.start(gated)
    await asyncio.wait_for(gated.reached.wait(), WAIT)
    await first.send(outgoing(first, "reply-1", reply_to="2"))
    await first.stop()

    inbox = RecordingInbox()
    await play(make_adapter(), inbox)

    texts = [m.text for m in inbox.messages]
    assert texts == [s["text"] for s in SCRIPT_LINES]
    rows = read_transcript(transcript)
    assert [row.get("from_bot", False) for row in rows].count(True) == 1
    assert rows[2]["key"] == "reply-1"
    assert len(rows) == len(SCRIPT_LINES) + 1


# -- send ---------------------------------------------------------------------------------


async def test_send_appends_a_bot_line_and_returns_its_id(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    adapter = make_adapter()
    await play(adapter, RecordingInbox())
    n = len(SCRIPT_LINES)

    sent_id = await adapter.send(outgoing(adapter, "k-1", text="Liefst niet mengen.", reply_to="3"))

    assert sent_id == str(n + 1)
    rows = read_transcript(transcript)
    assert len(rows) == n + 1
    assert without_time(rows[-1:]) == [
        {
            "id": n + 1,
            "channel": "gent",
            "author": "peerdesk",
            "text": "Liefst niet mengen.",
            "from_bot": True,
            "reply_to": 3,
            "key": "k-1",
        }
    ]


async def test_send_without_reply_to_records_none(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    adapter = make_adapter(interval=3600)
    await adapter.start(RecordingInbox())

    sent_id = await adapter.send(outgoing(adapter, "notice-1", channel="lille", reply_to=None))

    assert sent_id == "1"
    assert without_time(read_transcript(transcript)) == [
        {
            "id": 1,
            "channel": "lille",
            "author": "peerdesk",
            "text": "Een antwoord.",
            "from_bot": True,
            "key": "notice-1",
        }
    ]


async def test_send_is_idempotent_per_key(make_adapter: MakeAdapter, transcript: Path) -> None:
    adapter = make_adapter(interval=3600)
    await adapter.start(RecordingInbox())

    first = await adapter.send(outgoing(adapter, "same-key", text="first"))
    again = await adapter.send(outgoing(adapter, "same-key", text="first"))
    other = await adapter.send(outgoing(adapter, "other-key", text="second"))

    assert (first, again, other) == ("1", "1", "2")
    assert [row["key"] for row in read_transcript(transcript)] == ["same-key", "other-key"]


async def test_send_is_idempotent_across_a_restart(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    first = make_adapter(interval=3600)
    await first.start(RecordingInbox())
    sent = await first.send(outgoing(first, "retry-me"))
    await first.stop()

    second = make_adapter(interval=3600)
    await second.start(RecordingInbox())
    again = await second.send(outgoing(second, "retry-me"))

    assert again == sent
    assert len(read_transcript(transcript)) == 1


async def test_private_send_records_the_authors_name(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    adapter = make_adapter(interval=3600)
    await adapter.start(RecordingInbox())
    author = SCRIPT_LINES[0]["author"]

    await adapter.send(
        outgoing(
            adapter,
            "dm-1",
            visibility=Visibility.PRIVATE,
            recipient_id=f"demo-user-{author.casefold()}",
        )
    )
    await adapter.send(
        outgoing(adapter, "dm-2", visibility=Visibility.PRIVATE, recipient_id="someone-else")
    )
    await adapter.send(outgoing(adapter, "public-1", recipient_id=f"demo-user-{author.casefold()}"))

    rows = read_transcript(transcript)
    assert [row.get("private_to") for row in rows] == [author, "someone-else", None]


async def test_send_to_an_unknown_channel_is_a_permanent_error(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    adapter = make_adapter(interval=3600)
    await adapter.start(RecordingInbox())
    message = OutgoingMessage(
        key="k",
        channel=ChannelRef(platform="demo", chat_id="demo-nowhere", title="Nowhere"),
        text="hello",
        visibility=Visibility.PUBLIC,
    )

    with pytest.raises(PermanentDeliveryError, match="demo-nowhere"):
        await adapter.send(message)
    assert not transcript.exists()


# -- a damaged transcript -----------------------------------------------------------------


def _write_two_lines_and_half_a_third(transcript: Path) -> None:
    rows = [
        {"id": i, "at": f"2025-01-01T10:0{i}:00+00:00", **s}
        for i, s in enumerate(SCRIPT_LINES[:2], start=1)
    ]
    transcript.parent.mkdir(parents=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    transcript.write_text(text + '{"id": 3, "at": "2025-01-01T10:03', encoding="utf-8")


async def test_half_written_last_line_is_skipped_on_load(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    _write_two_lines_and_half_a_third(transcript)
    inbox = RecordingInbox()
    adapter = make_adapter(interval=3600)
    await adapter.start(inbox)

    assert [(m.message_id, m.text) for m in inbox.messages] == [
        ("1", SCRIPT_LINES[0]["text"]),
        ("2", SCRIPT_LINES[1]["text"]),
    ]
    assert [line.id for line in adapter.transcript()] == [1, 2]


async def test_line_appended_after_a_half_written_line_survives_the_next_restart(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    _write_two_lines_and_half_a_third(transcript)
    first = make_adapter()
    await play(first, RecordingInbox())
    await first.stop()

    inbox = RecordingInbox()
    await play(make_adapter(), inbox)

    assert [m.text for m in inbox.messages] == [s["text"] for s in SCRIPT_LINES]


async def test_line_cut_inside_a_multibyte_character_is_skipped(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    good = {"id": 1, "at": "2025-01-01T10:00:00+00:00", **SCRIPT_LINES[0]}
    cut = json.dumps({"id": 2, "at": "2025-01-01T10:01:00+00:00", "text": "🎶"}, ensure_ascii=False)
    transcript.parent.mkdir(parents=True)
    raw = (json.dumps(good, ensure_ascii=False) + "\n").encode() + cut.encode()[:-3]
    transcript.write_bytes(raw)
    inbox = RecordingInbox()
    adapter = make_adapter(interval=3600)

    await adapter.start(inbox)

    assert [m.message_id for m in inbox.messages] == ["1"]


# -- stop ---------------------------------------------------------------------------------


class SlowDownInbox(RecordingInbox):
    """After ``after`` messages, makes the adapter wait an hour before the next line."""

    def __init__(self, adapter: DemoAdapter, after: int) -> None:
        super().__init__()
        self.adapter = adapter
        self.after = after
        self.reached = asyncio.Event()

    async def ingest(self, message: IncomingMessage) -> None:
        await super().ingest(message)
        if len(self.messages) == self.after:
            self.adapter.interval = 3600
            self.reached.set()


def playback_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "demo-adapter" and not t.done()]


async def test_stop_cancels_playback_mid_script(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    adapter = make_adapter(interval=0)
    inbox = SlowDownInbox(adapter, after=3)
    await adapter.start(inbox)
    await asyncio.wait_for(inbox.reached.wait(), WAIT)
    await asyncio.sleep(0.01)  # playback now waits for the (long) interval
    assert len(playback_tasks()) == 1

    await asyncio.wait_for(adapter.stop(), 1.0)
    await asyncio.sleep(0.05)

    assert playback_tasks() == []
    assert without_time(read_transcript(transcript)) == script_rows(0, 3)
    assert [m.message_id for m in inbox.messages] == ["1", "2", "3"]
    assert not adapter.finished.is_set()
    await adapter.stop()  # a second stop is harmless


async def test_stop_while_waiting_for_the_first_line_appends_nothing(
    make_adapter: MakeAdapter, transcript: Path
) -> None:
    _write_two_lines_and_half_a_third(transcript)
    complete = transcript.read_bytes().rsplit(b"\n", 1)[0] + b"\n"
    inbox = RecordingInbox()
    adapter = make_adapter(interval=3600)
    await adapter.start(inbox)
    await asyncio.sleep(0.01)

    await asyncio.wait_for(adapter.stop(), 1.0)

    assert playback_tasks() == []
    assert transcript.read_bytes() == complete  # only the half-written line was dropped
    assert [m.message_id for m in inbox.messages] == ["1", "2"]  # the history, handed over


async def test_stop_without_start_is_harmless(make_adapter: MakeAdapter, transcript: Path) -> None:
    adapter = make_adapter()
    await adapter.stop()
    assert not transcript.exists()
    assert not adapter.finished.is_set()

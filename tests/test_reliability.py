"""Nothing lost, nothing sent twice that could be avoided: fault injection at volume
through the real outbox and python-telegram-bot against the fake Bot API, and a real
`peerdesk run` process killed with SIGKILL mid-delivery and mid-ingest.

Telegram's Bot API has no idempotency key, so a message the platform accepted whose
answer never reached us (a timeout, a dropped connection, a crash before the store
recorded it) is sent again: these tests count those repeats and check that they happen
only there. The figures they print are the ones in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bot.schema as t
from bot.models import (
    ChannelRef,
    IncomingMessage,
    OutboxStatus,
    OutgoingMessage,
    ReplyStatus,
    Role,
    Visibility,
)
from bot.outbox import OutboxWorker
from bot.runtime import Runtime, build_runtime
from bot.settings import OutboxSettings, Secret, TelegramSettings
from bot.store import Store
from bot.telegram_adapter import TelegramAdapter
from tests.conftest import add_user, make_settings
from tests.fake_telegram import TOKEN, Call, FakeBotAPI, Fault
from tests.fakes import FakeAdapter, opt_in
from tests.fakes import message as fake_message
from tests.tcp_proxy import TcpProxy

QUESTION = "is xtc met alcohol gevaarlijk?"
SEND_LATENCY = 0.06  # seconds the fake Bot API takes to answer sendMessage in the kill tests
CHATS = tuple(-1_000_100 - n for n in range(8))
GONE_CHAT = -1_000_999  # the bot was removed from this group: its replies fail for good


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _ref(chat: int) -> ChannelRef:
    return ChannelRef("telegram", str(chat), f"Group {chat}", language="nl")


async def _approve_replies(rt: Runtime, count: int, chats: tuple[int, ...]) -> list[str]:
    """Opt ``chats`` in, open a case in each, approve ``count`` replies spread over them.
    Returns the reply texts (each unique, so the server's record can be counted)."""
    volunteer = await add_user(rt, "vera", Role.COORDINATOR)
    cases = []
    for n, chat in enumerate(chats):
        await rt.pipeline.opt_in(opt_in(_ref(chat)))
        result = await rt.pipeline.ingest(
            IncomingMessage(
                channel=_ref(chat),
                message_id=str(500 + n),
                author_id=str(7000 + n),
                author_name=f"P{n}",
                text=QUESTION,
                sent_at=datetime.now(UTC),
            )
        )
        assert result is not None and result.case_id is not None
        cases.append(result.case_id)
    texts = []
    for n in range(count):
        text = f"R{n:05d} drink water en neem niet bij."
        await rt.store.approve_reply(
            cases[n % len(cases)],
            text=text,
            visibility=Visibility.PUBLIC,
            written_by=volunteer.id,
            approved_by=volunteer.id,
        )
        texts.append(text)
    return texts


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Wait until ``check()`` is true; fail the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def _outbox_rows(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                t.outbox.c.id,
                t.outbox.c.text,
                t.outbox.c.status,
                t.outbox.c.last_error,
                t.outbox.c.attempts,
                t.outbox.c.kind,
            ).order_by(t.outbox.c.id)
        )
        return list(rows.all())


# -- fault injection at volume ---------------------------------------------------------------

AMBIGUOUS = ("hang", "drop_after")  # the platform took the message; its answer was lost


@dataclass
class TelegramLikeFaults:
    """A seeded fault plan for sendMessage that misbehaves the way Telegram does.

    Flood control is per chat: after a 429 with ``retry_after`` every message to that
    chat is refused until the time is up (a call made inside the window is recorded in
    ``early``). Some replies are refused for good (400), on every attempt. Otherwise
    each call may get a 5xx, hang past the client's timeout (and then be posted anyway),
    have its connection dropped before or after the message was taken.
    """

    seed: int
    hang_seconds: float
    rng: random.Random = field(init=False)
    flood_until: dict[int, float] = field(default_factory=dict)
    doomed: dict[str, bool] = field(default_factory=dict)
    early: list[tuple[int, float]] = field(default_factory=list)
    drawn: Counter[str] = field(default_factory=Counter)
    ambiguous: Counter[str] = field(default_factory=Counter)  # per text

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __call__(self, call: Call) -> Fault | None:
        if call.method != "sendMessage":
            return None
        chat, text = int(call.params["chat_id"]), str(call.params["text"])
        until = self.flood_until.get(chat, 0.0)
        if call.at < until:
            self.early.append((chat, until - call.at))
            self.drawn["429 (early)"] += 1
            return Fault("429", retry_after=max(1, math.ceil(until - call.at)))
        if text not in self.doomed:
            self.doomed[text] = text.startswith("R") and self.rng.random() < 0.01
        if self.doomed[text]:
            self.drawn["400"] += 1
            return Fault("400", description="Bad Request: message thread not found")
        roll = self.rng.random()
        fault = None
        if roll < 0.03:
            retry_after = self.rng.choice((1, 2))
            self.flood_until[chat] = call.at + retry_after
            fault = Fault("429", retry_after=retry_after)
        elif roll < 0.05:
            fault = Fault("500")
        elif roll < 0.07:
            fault = Fault("502")
        elif roll < 0.075:
            fault = Fault("hang", seconds=self.hang_seconds)
        elif roll < 0.085:
            fault = Fault("drop")
        elif roll < 0.09:
            fault = Fault("drop_after")
        if fault is not None:
            self.drawn[fault.kind] += 1
            if fault.kind in AMBIGUOUS:
                self.ambiguous[text] += 1
        return fault


async def _deliver_under_faults(
    runtime: Runtime, fake: FakeBotAPI, replies: int, *, seed: int
) -> None:
    texts = await _approve_replies(runtime, replies, (*CHATS, GONE_CHAT))
    fake.gone_chats.add(GONE_CHAT)
    # The client gives up after 2 s, and a planned hang lasts longer. A shorter timeout
    # (it was 0.3 s) let a busy machine's pause of the one event loop (fake server, bot
    # and database share it here) time out a call the platform had answered: a repeat the
    # plan did not cause, seen once in a CI rehearsal.
    plan = TelegramLikeFaults(seed=seed, hang_seconds=2.5)
    fake.plan = plan
    adapter = TelegramAdapter(
        TelegramSettings(
            token=Secret(TOKEN),
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            poll_timeout=1,
            request_timeout=2.0,
        )
    )
    await adapter.start(runtime.pipeline)
    worker = OutboxWorker(
        runtime.store,
        {"telegram": adapter},
        OutboxSettings(poll_seconds=0.02, max_attempts=8, retry_seconds=0.05, lease_seconds=30),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    started = time.monotonic()
    try:
        async with asyncio.timeout(600):
            while True:
                rows = await _outbox_rows(runtime.store)
                waiting = [r for r in rows if r.status in ("pending", "sending")]
                if not waiting:
                    break
                await asyncio.sleep(0.25)
        seconds = time.monotonic() - started
    finally:
        stop.set()
        await task
        await adapter.stop()

    sent = Counter(m.text for m in fake.sent)
    rows = {r.text: r for r in await _outbox_rows(runtime.store) if r.kind == "reply"}
    assert set(rows) == set(texts)
    gone = {text for n, text in enumerate(texts) if n % (len(CHATS) + 1) == len(CHATS)}
    duplicates = 0
    for text in texts:
        row = rows[text]
        if plan.doomed[text]:  # refused before anything else is looked at
            assert (row.status, sent[text]) == ("failed", 0)
            assert row.last_error == "Telegram refused the message: Message thread not found"
        elif text in gone:
            assert (row.status, sent[text]) == ("failed", 0)
            assert row.last_error.startswith("the bot may no longer write in this group")
        else:
            assert row.status == "sent", (text, row)
            # Exactly once, plus once for each attempt the platform took without the
            # answer reaching us: Telegram cannot recognise a retry.
            assert sent[text] == 1 + plan.ambiguous[text], (text, sent[text])
            duplicates += sent[text] - 1
    assert set(sent) <= set(texts) | {r.text for r in await _outbox_rows(runtime.store)}
    replies_by_status = Counter(r.status for r in rows.values())
    async with runtime.store.engine.connect() as conn:
        statuses = Counter((await conn.scalars(sa.select(t.replies.c.status))).all())
    assert statuses == Counter(
        {ReplyStatus.SENT.value: replies_by_status["sent"],
         ReplyStatus.FAILED.value: replies_by_status["failed"]}
    )  # fmt: skip
    # Flood control was honoured: no message to a chat inside its retry_after window.
    assert plan.early == []
    lost_answers = sum(plan.ambiguous[x] for x in texts if rows[x].status == "sent")
    assert duplicates == lost_answers
    print(
        f"\n{replies} replies, seed {seed}: {seconds:.1f}s; faults {dict(plan.drawn)}; "
        f"sent {replies_by_status['sent']}, failed {replies_by_status['failed']} "
        f"({len(gone)} to a group that removed the bot, "
        f"{sum(plan.doomed.values())} refused by the platform); lost 0; "
        f"repeats {duplicates} (= the answers lost after the platform took the message)"
    )


async def test_replies_under_injected_faults_are_delivered_or_failed_with_a_reason(
    runtime: Runtime, fake: FakeBotAPI
) -> None:
    await _deliver_under_faults(runtime, fake, 120, seed=7)


@pytest.mark.slow
async def test_thousands_of_replies_under_injected_faults(
    runtime: Runtime, fake: FakeBotAPI
) -> None:
    replies = int(os.environ.get("PEERDESK_TEST_REPLIES", "3000"))
    await _deliver_under_faults(runtime, fake, replies, seed=2024)


# -- two workers, slow sends ---------------------------------------------------------------


class SlowAdapter(FakeAdapter):
    """A platform that takes ``seconds`` per message and records every key it got."""

    def __init__(self, seconds: float, record: list[str]) -> None:
        super().__init__()
        self.seconds = seconds
        self.record = record

    async def send(self, message: OutgoingMessage) -> str:
        await asyncio.sleep(self.seconds)
        self.record.append(message.key)
        return await super().send(message)


async def test_a_worker_that_fell_behind_its_lease_does_not_send_what_another_took_over(
    runtime: Runtime,
) -> None:
    """Two instances' workers; sends slow enough that a claimed batch outlives its lease.
    The second worker takes the late rows over; the first must then leave them alone."""
    await runtime.pipeline.opt_in(opt_in())
    result = await runtime.pipeline.ingest(fake_message(QUESTION, "9"))
    assert result is not None and result.case_id is not None
    volunteer = await add_user(runtime, "vera", Role.COORDINATOR)
    for n in range(14):
        await runtime.store.approve_reply(
            result.case_id,
            text=f"reply {n}",
            visibility=Visibility.PUBLIC,
            written_by=volunteer.id,
            approved_by=volunteer.id,
        )
    record: list[str] = []
    settings = OutboxSettings(poll_seconds=0.02, retry_seconds=0.05, lease_seconds=1.0)
    workers = [
        OutboxWorker(runtime.store, {"fake": SlowAdapter(0.2, record)}, settings) for _ in range(2)
    ]
    stop = asyncio.Event()
    first = asyncio.create_task(workers[0].run(stop))
    await asyncio.sleep(0.1)  # the first worker holds a batch of ten
    second = asyncio.create_task(workers[1].run(stop))

    async def all_sent() -> bool:
        return all(i.status is OutboxStatus.SENT for i in await runtime.store.outbox_items())

    await _until(all_sent, 30)
    stop.set()
    await asyncio.gather(first, second)
    assert sorted(Counter(record).values()) == [1] * 15  # 14 replies and the opt-in notice
    assert all(len(w.adapters["fake"].sent) > 0 for w in workers)  # type: ignore[attr-defined]


# -- a real process, killed ------------------------------------------------------------------


def _env(fake: FakeBotAPI, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    env.update(
        PEERDESK_DATABASE_URL=database_url,
        PEERDESK_TELEGRAM_TOKEN=TOKEN,
        PEERDESK_TELEGRAM_BASE_URL=fake.base_url,
        PEERDESK_TELEGRAM_POLL_TIMEOUT="1",
        PEERDESK_TELEGRAM_REQUEST_TIMEOUT="5",
        PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE="lexical",
        PEERDESK_DETECTION_MODE="lexicon",
        PEERDESK_OUTBOX_POLL_SECONDS="0.05",
        PEERDESK_OUTBOX_RETRY_SECONDS="0.1",
        # A delivery cut off by the kill is retried once its lease runs out.
        PEERDESK_OUTBOX_LEASE_SECONDS="1",
    )
    return env


async def _start(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """Start `peerdesk run`; its log goes to ``cwd/peerdesk.log`` (a pipe nobody reads
    would fill up and stop the process at its next log line)."""
    with (cwd / "peerdesk.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--port", "0", cwd=cwd, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert re.search(r"http://\S+", line), line
    return proc


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.communicate()
    assert proc.returncode == -signal.SIGKILL


async def _stop(proc: asyncio.subprocess.Process, log: Path) -> None:
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, log.read_text(errors="replace")[-5000:]


async def _prepared(tmp_path: Path, database_url: str) -> Runtime:
    """The store as `peerdesk run` will find it (migrated, FAQ imported, secrets kept)."""
    return await build_runtime(make_settings(tmp_path, database_url))


@pytest.mark.slow
async def test_sigkill_mid_delivery_loses_no_reply_and_repeats_only_the_one_in_flight(
    tmp_path: Path, database_url: str, fake: FakeBotAPI
) -> None:
    """`peerdesk run` delivering hundreds of approved replies is killed with SIGKILL
    again and again: half the kills land while Telegram holds its answer to a message it
    already took (the exact window between the platform accepting and the store
    recording), the others at random moments. After a last restart every reply is
    delivered; only a message in flight at a kill is repeated."""
    replies = int(os.environ.get("PEERDESK_TEST_CRASH_REPLIES", "400"))
    kills = int(os.environ.get("PEERDESK_TEST_KILLS", "10"))
    rng = random.Random(11)
    rt = await _prepared(tmp_path, database_url)
    try:
        texts = await _approve_replies(rt, replies, CHATS)
    finally:
        await rt.close()
    env = _env(fake, database_url)
    held: list[str] = []
    hold_at = [0]

    def plan(call: Call) -> Fault | None:
        if call.method != "sendMessage":
            return None
        hold_at[0] -= 1
        if hold_at[0] == 0:
            held.append(str(call.params["text"]))
            return Fault("hold_after")
        # A round trip as slow as the real API's, so the kills land while replies are
        # still waiting (on a fast machine the whole outbox would drain in a second).
        return Fault("hang", seconds=SEND_LATENCY)

    fake.plan = plan
    started = time.monotonic()
    for kill in range(kills):
        fake.held.clear()
        fake.release.clear()
        proc = await _start(env, tmp_path)
        if kill % 2 == 0:
            hold_at[0] = rng.randint(5, 25)  # hold the answer to the n-th message from now
            await asyncio.wait_for(fake.held.wait(), 60)
        else:
            hold_at[0] = 0
            await asyncio.sleep(rng.uniform(0.5, 2.5))
        await _kill(proc)
        fake.release.set()  # the held answer goes to a dead connection
        unsent = set(texts) - {m.text for m in fake.sent}
        assert unsent, f"everything was delivered before kill {kill + 1}: it proves nothing"
    fake.plan = None
    proc = await _start(env, tmp_path)
    try:
        store = Store(database_url)
        try:

            async def all_sent() -> bool:
                return all(r.status == "sent" for r in await _outbox_rows(store))

            await _until(all_sent, 120)
        finally:
            await store.close()
    finally:
        await _stop(proc, tmp_path / "peerdesk.log")
    seconds = time.monotonic() - started

    sent = Counter(m.text for m in fake.sent)
    assert all(sent[text] >= 1 for text in texts)  # nothing lost
    repeated = {text: n - 1 for text, n in sent.items() if n > 1}
    # Every message held at a kill was taken by the platform and not recorded: it is
    # sent again (Telegram has no idempotency key). Nothing else can repeat but a
    # message in flight at a random kill: at most one per kill (one send at a time).
    assert set(held) <= set(repeated)
    assert sum(repeated.values()) <= kills
    assert all(n == 1 for n in repeated.values())
    print(
        f"\n{replies} replies, {kills} SIGKILLs ({len(held)} inside the window): "
        f"{seconds:.1f}s; lost 0; repeated {sum(repeated.values())} "
        f"({len(held)} held in the window + {sum(repeated.values()) - len(held)} "
        "in flight at a random kill)"
    )


async def _each_stored_once(database_url: str, updates: int, flagged: int) -> int:
    """Assert that each of ``updates`` messages is stored once and each of the ``flagged``
    ones opened a case of its own; returns the number of cases."""
    store = Store(database_url)
    try:
        async with store.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(t.messages.c.platform_message_id, t.messages.c.case_id)
                )
            ).all()
            cases = await conn.scalar(sa.select(sa.func.count()).select_from(t.cases))
    finally:
        await store.close()
    ids = Counter(r.platform_message_id for r in stored)
    assert len(ids) == updates and set(ids.values()) == {1}  # each stored, once
    in_cases = Counter(r.case_id for r in stored if r.case_id is not None)
    assert (cases, len(in_cases), set(in_cases.values())) == (flagged, flagged, {1})
    return int(cases or 0)


@pytest.mark.slow
async def test_sigkill_mid_ingest_loses_no_update_and_stores_each_once(
    tmp_path: Path, database_url: str, fake: FakeBotAPI
) -> None:
    """Thousands of updates stream in while `peerdesk run` is killed right after
    Telegram handed it a batch (fetched, partly or not yet stored, not confirmed) and at
    random moments. The updates come again after the restart; each message is stored
    once and each flagged one makes one case."""
    updates = int(os.environ.get("PEERDESK_TEST_UPDATES", "2000"))
    kills = int(os.environ.get("PEERDESK_TEST_KILLS", "10"))
    rng = random.Random(5)
    rt = await _prepared(tmp_path, database_url)
    try:
        for chat in CHATS:
            await rt.pipeline.opt_in(opt_in(_ref(chat)))
    finally:
        await rt.close()
    flagged = 0
    for n in range(updates):
        chat = FakeBotAPI.group(CHATS[n % len(CHATS)])
        user = FakeBotAPI.user(10_000 + n, f"P{n}")
        if n % 2 == 0:
            fake.say(chat, user, QUESTION)
            flagged += 1
        else:
            fake.say(chat, user, f"wie gaat er zaterdag mee naar de zee? ({n})")
    env = _env(fake, database_url)
    unconfirmed_at_kills = 0
    started = time.monotonic()
    for kill in range(kills):
        proc = await _start(env, tmp_path)
        if kill % 2 == 0:
            before = fake.batches_served

            async def served(before: int = before) -> bool:
                return fake.batches_served != before or fake.pending_updates() == 0

            await _until(served, 60)
            await asyncio.sleep(rng.uniform(0, 0.3))
        else:
            await asyncio.sleep(rng.uniform(0.2, 2.0))
        await _kill(proc)
        unconfirmed_at_kills += max(0, fake.last_served - max(fake.confirmed_offset, 1) + 1)
    proc = await _start(env, tmp_path)
    try:

        async def confirmed() -> bool:
            return fake.confirmed_offset > updates

        await _until(confirmed, 180)
    finally:
        await _stop(proc, tmp_path / "peerdesk.log")
    seconds = time.monotonic() - started

    cases = await _each_stored_once(database_url, updates, flagged)
    assert unconfirmed_at_kills > 0  # some kills did land between fetch and store
    print(
        f"\n{updates} updates, {kills} SIGKILLs: {seconds:.1f}s; {unconfirmed_at_kills} "
        f"updates fetched but unconfirmed at the kills, fetched again; "
        f"stored {updates} once each, {cases} cases, lost 0"
    )


# -- the database unreachable --------------------------------------------------------------


@asynccontextmanager
async def _outage(database_url: str, env: dict[str, str]) -> AsyncIterator[Outage]:
    """Yield a switch that makes the database unreachable for the process started with
    ``env``. PostgreSQL: the process reaches it through a TCP relay that is cut (open
    connections dropped, new ones refused). SQLite, which has no network: another
    connection holds an exclusive lock past the process's busy timeout (10 s), so every
    write fails with "database is locked", as when a backup or a stuck process holds it."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        holder = sqlite3.connect(path, isolation_level=None)

        def down() -> None:
            holder.execute("BEGIN EXCLUSIVE")

        def up() -> None:
            holder.execute("ROLLBACK")

        try:
            yield Outage(down, up)
        finally:
            holder.close()
        return
    url = sa.engine.make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    env["PEERDESK_DATABASE_URL"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False
    )
    try:
        yield Outage(proxy.cut, proxy.restore)
    finally:
        await proxy.close()


@dataclass
class Outage:
    down: Callable[[], None]
    up: Callable[[], None]


@pytest.mark.slow
async def test_database_unreachable_mid_ingest_loses_no_update(
    tmp_path: Path, database_url: str, fake: FakeBotAPI
) -> None:
    """Updates stream in at a steady rate while the database becomes unreachable for
    longer than any single retry, then comes back: `peerdesk run` keeps running, confirms
    to Telegram only what it stored, and afterwards every message is stored once and every
    flagged one has its case."""
    rate, seconds = 40, 24.0  # updates per second, for this long
    outage_from, outage_to = 4.0, 19.0  # seconds after the stream starts
    updates = int(rate * seconds)
    rt = await _prepared(tmp_path, database_url)
    try:
        for chat in CHATS:
            await rt.pipeline.opt_in(opt_in(_ref(chat)))
    finally:
        await rt.close()
    env = _env(fake, database_url)
    flagged = 0
    async with _outage(database_url, env) as outage:
        proc = await _start(env, tmp_path)
        try:
            started = time.monotonic()
            confirmed_before = confirmed_after = 0
            for n in range(updates):
                at = time.monotonic() - started
                if outage_from <= at and confirmed_before == 0:
                    confirmed_before = fake.confirmed_offset
                    outage.down()
                if outage_to <= at and confirmed_after == 0:
                    confirmed_after = fake.confirmed_offset
                    outage.up()
                chat = FakeBotAPI.group(CHATS[n % len(CHATS)])
                user = FakeBotAPI.user(20_000 + n, f"P{n}")
                if n % 2 == 0:
                    fake.say(chat, user, QUESTION)
                    flagged += 1
                else:
                    fake.say(chat, user, f"wie gaat er zaterdag mee naar de zee? ({n})")
                await asyncio.sleep(max(0.0, (n + 1) / rate - (time.monotonic() - started)))
            assert confirmed_before and confirmed_after, "the outage did not fall in the stream"

            async def confirmed() -> bool:
                return fake.confirmed_offset > updates

            await _until(confirmed, 120)
            assert proc.returncode is None  # it kept running through the outage
            took = time.monotonic() - started

            # A message the outage caught between storing and filing is filed by the
            # minute's recovery: wait for it (at most one round) before stopping.
            watcher = Store(database_url)

            async def filed() -> bool:
                async with watcher.engine.connect() as conn:
                    count = await conn.scalar(sa.select(sa.func.count()).select_from(t.cases))
                return count == flagged

            try:
                await _until(filed, 90)
            finally:
                await watcher.close()
        finally:
            await _stop(proc, tmp_path / "peerdesk.log")
    cases = await _each_stored_once(database_url, updates, flagged)
    # While the database was away nothing was confirmed to Telegram but what was stored
    # before: at most the batch in hand when it went (getUpdates hands out 100 at most).
    arrived_during = int((outage_to - outage_from) * rate)
    assert confirmed_after - confirmed_before <= 100 < arrived_during
    # The log stays readable: each loop's first failure with its traceback, then a line
    # per try at growing pauses (it was a traceback per loop per poll, megabytes an hour).
    log = (tmp_path / "peerdesk.log").read_text(errors="replace").splitlines()
    failing = [line for line in log if "still failing" in line]
    assert len(log) < 600 and len(failing) < 60, f"{len(log)} log lines: {log[-30:]}"
    # And the recovery shows: the adapter's retry says it works again or, when the outage
    # fell between storing a message and filing it (seen in CI on a loaded machine), the
    # pipeline said so and the minute's recovery filed it (each stored once, above).
    assert any("works again" in line or "stored but not processed" in line for line in log)
    print(
        f"\n{len(log)} log lines, {len(failing)} of them 'still failing'; "
        f"{updates} updates at {rate}/s, database unreachable for "
        f"{outage_to - outage_from:.0f}s: all confirmed after {took:.1f}s; confirmed during "
        f"the outage {confirmed_after - confirmed_before} of {arrived_during} that arrived; "
        f"stored {updates} once each, {cases} cases, lost 0"
    )

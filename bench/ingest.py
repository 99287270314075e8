"""Ingest: updates per second from the fake Bot API through the real python-telegram-bot
into stored, detected cases, against a bare PTB bot that only acknowledges the same
updates from the same server; and the time from an update being handed out to its case
being visible through ``/api/v1/cases`` at a steady rate.

Both bots run as real processes (``peerdesk run`` with a Telegram token, and
``python -m bench.bare_ptb``); the fake server runs in the bench's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.figures import Figure, at_least, percentile
from bench.procs import ROOT, Peerdesk, clean_env, peerdesk
from tests.fake_telegram import TOKEN, FakeBotAPI

DATASET = ROOT / "bot" / "data" / "detection" / "dataset.jsonl"
GROUPS = (-100_111, -100_222, -100_333, -100_444)
ADMIN_ID = 7
WARMUP = 40


def chat_texts(seed: int = 0) -> list[str]:
    """The labelled detection dataset's messages (nl/fr/en, about 42 % drug-related), in
    a fixed shuffled order: heavier than ordinary chat, where few messages are flagged."""
    texts = [json.loads(line)["text"] for line in DATASET.read_text("utf-8").splitlines()]
    random.Random(seed).shuffle(texts)
    return texts


class BenchBotAPI(FakeBotAPI):
    """The tests' fake Bot API, plus: updates queued in bulk, when each update was first
    handed out, and when each offset was confirmed."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: dict[int, float] = {}  # update id -> time.monotonic() first handed out
        self.confirmations: list[tuple[int, float]] = []  # (offset, when), offsets rising
        self.polls = 0

    def queue(self, updates: list[dict[str, Any]]) -> None:
        """Queue ready-made updates (ids from :meth:`next_update_id`) and wake the poller."""
        self._updates.extend(updates)
        asyncio.get_running_loop().create_task(self._notify())

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def update(self, chat_id: int, user_id: int, text: str) -> dict[str, Any]:
        chat = self.group(chat_id, f"Bench group {-chat_id}")
        message = self.message(chat, self.user(user_id, f"User {user_id}"), text)
        return {"update_id": self.next_update_id(), "message": message}

    async def _api_getUpdates(self, params: dict[str, Any]) -> web.Response:
        self.polls += 1
        offset = int(params.get("offset") or 0)
        if offset > self.confirmed_offset:
            self.confirmations.append((offset, time.monotonic()))
        response = await super()._api_getUpdates(params)
        now = time.monotonic()
        limit = int(params.get("limit") or 100)
        for update in self._updates[:limit]:
            self.handed.setdefault(update["update_id"], now)
        return response

    def confirmed_at(self, update_id: int) -> float | None:
        """When the bot confirmed ``update_id`` (asked for an offset past it)."""
        return next((t for off, t in self.confirmations if off > update_id), None)

    async def wait_confirmed(self, update_id: int, *, within: float) -> float:
        deadline = time.monotonic() + within
        while self.confirmed_offset <= update_id:
            if time.monotonic() > deadline:
                raise TimeoutError(f"update {update_id} not confirmed within {within:.0f} s")
            await asyncio.sleep(0.002)
        when = self.confirmed_at(update_id)
        assert when is not None
        return when


@dataclass
class Feed:
    """Chat traffic for the bench: groups, authors, texts in a fixed order."""

    api: BenchBotAPI
    authors_per_group: int = 40
    texts: list[str] = field(default_factory=chat_texts)
    sent: int = 0

    def next(self, *, author: int | None = None) -> dict[str, Any]:
        i = self.sent
        self.sent += 1
        chat = GROUPS[i % len(GROUPS)]
        user = author if author is not None else 1000 + (i * 7) % self.authors_per_group
        return self.api.update(chat, user, self.texts[i % len(self.texts)])

    def batch(self, n: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(n)]


async def throughput(api: BenchBotAPI, feed: Feed, n: int, *, within: float) -> float:
    """Queue ``n`` updates at once; updates per second until the bot confirmed them all."""
    updates = feed.batch(n)
    start = time.monotonic()
    api.queue(updates)
    done = await api.wait_confirmed(updates[-1]["update_id"], within=within)
    return n / (done - start)


async def warm_up(api: BenchBotAPI, feed: Feed) -> None:
    updates = feed.batch(WARMUP)
    api.queue(updates)
    await api.wait_confirmed(updates[-1]["update_id"], within=120)


@contextlib.contextmanager
def bare_bot(api: BenchBotAPI) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_ptb", api.base_url, TOKEN],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_polling(api: BenchBotAPI, *, within: float) -> None:
    deadline = time.monotonic() + within
    while api.polls == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the bot never asked for updates")
        await asyncio.sleep(0.01)


def telegram_env(api: BenchBotAPI, workdir: Path, **extra: str) -> dict[str, str]:
    return {
        "PEERDESK_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'peerdesk.db'}",
        "PEERDESK_DEMO_TRANSCRIPT_PATH": str(workdir / "demo.jsonl"),
        "PEERDESK_TELEGRAM_TOKEN": TOKEN,
        "PEERDESK_TELEGRAM_BASE_URL": api.base_url,
        "PEERDESK_TELEGRAM_BASE_FILE_URL": api.base_file_url,
        "PEERDESK_TELEGRAM_POLL_TIMEOUT": "1",
        "PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES": "published,in_review",
        "PEERDESK_GENERAL_LOG_LEVEL": "WARNING",
        **extra,
    }


async def opt_in_groups(api: BenchBotAPI) -> None:
    """Every bench group's admin sends /optin, as on Telegram."""
    admin = api.user(ADMIN_ID, "Admin")
    updates: list[dict[str, Any]] = []
    for chat_id in GROUPS:
        api.members[(chat_id, ADMIN_ID)] = "administrator"
        chat = api.group(chat_id, f"Bench group {-chat_id}")
        updates.append(
            {"update_id": api.next_update_id(), "message": api.message(chat, admin, "/optin en")}
        )
    api.queue(updates)
    await api.wait_confirmed(updates[-1]["update_id"], within=120)


async def api_token(db: Path) -> str:
    """A coordinator account and bearer token in the store at ``db`` (migrating it)."""
    from bot.models import Role
    from bot.passwords import hash_password, new_token, token_hash
    from bot.store import Store

    store = Store(f"sqlite+aiosqlite:///{db}")
    await store.initialize()
    try:
        user = await store.add_user("bench", hash_password("bench-password"), Role.COORDINATOR)
        token = new_token()
        await store.add_token(user.id, token_hash(token))
    finally:
        await store.close()
    return token


def stored_counts(db: Path) -> tuple[int, int, int]:
    """(messages stored, of which detected, cases) in the store at ``db``."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        messages, detected = conn.execute(
            "SELECT count(*), coalesce(sum(detected), 0) FROM messages"
        ).fetchone()
        (cases,) = conn.execute("SELECT count(*) FROM cases").fetchone()
    return int(messages), int(detected), int(cases)


async def latency(
    api: BenchBotAPI, feed: Feed, app: Peerdesk, token: str, *, rate: float, seconds: float
) -> tuple[list[float], int]:
    """Push updates at a steady ``rate`` for ``seconds``, each from a new author (so each
    flagged one opens its own case), and watch ``/api/v1/cases/{id}`` for the next case
    id. Returns the latencies in ms (handed out -> visible) and how many were pushed."""
    by_message: dict[str, int] = {}
    n = int(rate * seconds)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=app.url, headers=headers, timeout=30) as client:
        listed = (await client.get("/api/v1/cases", params={"limit": 1000})).json()["cases"]
        next_id = max((c["id"] for c in listed), default=0) + 1

        async def pace() -> None:
            start = time.monotonic()
            for i in range(n):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                update = feed.next(author=5_000_000 + feed.sent)
                by_message[str(update["message"]["message_id"])] = update["update_id"]
                api.queue([update])

        pacer = asyncio.create_task(pace())
        samples: list[float] = []
        idle_since = None
        while True:
            response = await client.get(f"/api/v1/cases/{next_id}")
            now = time.monotonic()
            if response.status_code == 200:
                idle_since = None
                messages = [m for m in response.json()["messages"] if m["in_case"]]
                if not messages:  # no message in it any more: not one the pacer made
                    next_id += 1
                    continue
                first = min(messages, key=lambda m: m["id"])
                update_id = by_message.get(first["platform_message_id"])
                if update_id is not None and update_id in api.handed:
                    samples.append((now - api.handed[update_id]) * 1000)
                next_id += 1
                continue
            if pacer.done():
                idle_since = idle_since or now
                if now - idle_since > 3.0:
                    break
            await asyncio.sleep(0.005)
        await pacer
    return samples, n


@dataclass(frozen=True)
class IngestSizes:
    updates: int  # per throughput round
    rounds: int
    latency_seconds: float
    rate: float = 200.0


QUICK = IngestSizes(updates=200, rounds=1, latency_seconds=2.0)
FULL = IngestSizes(updates=2000, rounds=2, latency_seconds=20.0)


async def run(workdir: Path, sizes: IngestSizes) -> list[Figure]:
    workdir.mkdir(parents=True, exist_ok=True)
    api = BenchBotAPI()
    await api.start()
    try:
        feed = Feed(api)
        floor: list[float] = []
        ours: list[float] = []
        db = workdir / "peerdesk.db"
        token = await api_token(db)
        with bare_bot(api):
            await _wait_polling(api, within=60)
            await warm_up(api, feed)
            for _ in range(sizes.rounds):
                floor.append(await throughput(api, feed, sizes.updates, within=300))
        await asyncio.sleep(1.5)  # the bare bot's last confirmation
        async with peerdesk(workdir, telegram_env(api, workdir)) as app:
            await opt_in_groups(api)
            await warm_up(api, feed)
            before = stored_counts(db)
            for _ in range(sizes.rounds):
                ours.append(await throughput(api, feed, sizes.updates, within=600))
            after = stored_counts(db)
            samples, pushed = await latency(
                api, feed, app, token, rate=sizes.rate, seconds=sizes.latency_seconds
            )
    finally:
        await api.stop()
    stored = after[0] - before[0]
    detected = after[1] - before[1]
    expected = sizes.updates * sizes.rounds
    if stored != expected or detected != expected:
        raise RuntimeError(f"ingest: {expected} updates sent, {stored} stored, {detected} detected")
    best, best_floor = max(ours), max(floor)
    ratio = best / best_floor
    cases = after[2] - before[2]
    figures = [
        Figure(
            "ingest: Telegram updates → stored, detected cases",
            best,
            "updates/s",
            baseline=best_floor,
            baseline_label="bare PTB bot, acknowledge only",
            target="≥ 0.8× floor",
            met=at_least(ratio, 0.8),
            note=f"{expected} updates, {cases} cases opened; best of {sizes.rounds}",
        )
    ]
    if samples:
        label = f"{sizes.rate:.0f} updates/s for {sizes.latency_seconds:.0f} s"
        for p in (50, 99):
            figures.append(
                Figure(
                    f"ingest: handed out → case in /api/v1/cases, p{p}",
                    percentile(samples, p),
                    "ms",
                    note=f"{label}; {len(samples)} cases from {pushed} updates",
                )
            )
    return figures

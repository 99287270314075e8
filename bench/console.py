"""Console: queue page and case page latency (p50/p95) with 20 concurrent clients, on a
store holding 1,000 and 100,000 cases, served by a real ``peerdesk run`` process.

The store is filled directly through the schema's tables (the pipeline would take hours
for 100,000 cases): the same 300 open cases in both sizes (a full queue page), the rest
answered or dismissed history, one or two messages per case with context messages
between them, and three suggestions per case.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.figures import Figure, at_most, percentile
from bench.ingest import api_token, chat_texts
from bench.procs import peerdesk
from bench.runtime import bench_runtime
from bot import schema as t
from bot.models import Reason, utcnow

OPEN_CASES = 300
CHANNELS = 20
CLIENTS = 20
REASON = Reason("substance", "xtc", "ecstasy", 1.0).as_dict()


async def fill(db: Path, cases: int, *, rng: random.Random) -> None:
    """Add ``cases`` cases (and their messages and suggestions) to the store at ``db``."""
    from bot.store import Store

    store = Store(f"sqlite+aiosqlite:///{db}")
    await store.initialize()
    texts = chat_texts()
    now = utcnow()
    try:
        async with store.engine.begin() as conn:
            entry_ids = list((await conn.scalars(sa.select(t.faq_entries.c.id))).all())
            channel_ids = []
            for c in range(CHANNELS):
                result = await conn.execute(
                    t.channels.insert().values(
                        platform="telegram",
                        chat_id=f"-100{c}",
                        title=f"Bench group {c}",
                        kind="group",
                        language="nl",
                        opted_in=True,
                        created_at=now,
                    )
                )
                channel_ids.append(result.inserted_primary_key[0])  # type: ignore[index]
            message_id = 0
            for start in range(0, cases, 5000):
                case_rows, message_rows, suggestion_rows = [], [], []
                for n in range(start, min(cases, start + 5000)):
                    case_id = n + 1
                    channel = channel_ids[n % CHANNELS]
                    at = now - timedelta(minutes=cases - n)
                    status = (
                        "open"
                        if n >= cases - OPEN_CASES
                        else rng.choice(["answered", "answered", "dismissed"])
                    )
                    first = message_id + 2  # after one context message
                    case_rows.append(
                        {
                            "id": case_id,
                            "channel_id": channel,
                            "author": f"author-{n}",
                            "status": status,
                            "urgent": rng.random() < 0.05,
                            "score": 0.8,
                            "language": "nl",
                            "first_message_id": first,
                            "created_at": at,
                            "updated_at": at,
                        }
                    )
                    for k in range(rng.choice([2, 2, 3])):
                        message_id += 1
                        in_case = k > 0
                        message_rows.append(
                            {
                                "id": message_id,
                                "channel_id": channel,
                                "platform_message_id": str(message_id),
                                "author": f"author-{n}" if in_case else f"other-{n}",
                                "author_name": "Sam",
                                "text": texts[message_id % len(texts)],
                                "sent_at": at + timedelta(seconds=k),
                                "received_at": at + timedelta(seconds=k),
                                "case_id": case_id if in_case else None,
                                "detected": True,
                                "flagged": in_case,
                                "urgent": False,
                                "score": 0.8 if in_case else 0.1,
                                "reasons": [REASON] if in_case else [],
                                "language": "nl",
                                "substances": ["mdma"] if in_case else [],
                            }
                        )
                    for rank, entry in enumerate(rng.sample(entry_ids, 3), start=1):
                        suggestion_rows.append(
                            {
                                "case_id": case_id,
                                "entry_id": entry,
                                "rank": rank,
                                "score": 0.7,
                                "why": ["xtc"],
                                "created_at": at,
                            }
                        )
                await conn.execute(t.cases.insert(), case_rows)
                await conn.execute(t.messages.insert(), message_rows)
                await conn.execute(t.suggestions.insert(), suggestion_rows)
    finally:
        await store.close()


async def load(url: str, token: str, paths: list[str], *, clients: int = CLIENTS) -> list[float]:
    """``clients`` concurrent clients fetch ``paths`` (shared out between them); each
    request's latency in ms."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)
    out: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            while not queue.empty():
                path = queue.get_nowait()
                start = time.perf_counter()
                response = await http.get(path)
                out.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


async def run(workdir: Path, *, sizes: tuple[int, int], requests: int) -> list[Figure]:
    rng = random.Random(0)
    seeded = workdir / "seeded"
    async with bench_runtime(seeded):  # migrated, with the seed FAQ and its vectors
        pass
    results: dict[int, dict[str, list[float]]] = {}
    for size in sizes:
        folder = workdir / f"cases-{size}"
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "peerdesk.db"
        shutil.copyfile(seeded / "peerdesk.db", db)
        await fill(db, size, rng=rng)
        token = await api_token(db)
        env: dict[str, Any] = {
            "PEERDESK_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "PEERDESK_GENERAL_LOG_LEVEL": "WARNING",
            # The generated cases reach back 100,000 minutes (69 days): keep them all, or
            # the hourly retention purge at start would delete most of them.
            "PEERDESK_PRIVACY_RETENTION_UNANSWERED_DAYS": "3650",
            "PEERDESK_PRIVACY_RETENTION_ANSWERED_DAYS": "3650",
        }
        async with peerdesk(folder, env) as app:
            case_paths = [f"/cases/{rng.randint(1, size)}" for _ in range(requests)]
            await load(app.url, token, ["/queue", *case_paths[:20]], clients=4)  # warm up
            results[size] = {
                "queue": await load(app.url, token, ["/queue"] * requests),
                "case": await load(app.url, token, case_paths),
            }
    small, big = sizes
    figures = []
    for page in ("queue", "case"):
        for p in (50, 95):
            ours, floor = percentile(results[big][page], p), percentile(results[small][page], p)
            figures.append(
                Figure(
                    f"console: {page} page p{p}, {big:,} cases",
                    ours,
                    "ms",
                    baseline=floor,
                    baseline_label=f"{small:,} cases",
                    target="≤ 1.5× at 1k",
                    met=at_most(ours / floor, 1.5),
                    note=f"{CLIENTS} concurrent clients, {requests} requests",
                )
            )
    return figures

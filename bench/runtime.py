"""A peerdesk runtime built in the bench's process, exactly as ``peerdesk run`` builds
it (``bot.runtime.build_runtime``), on a fresh SQLite store in a work folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.runtime import Runtime, build_runtime
from bot.settings import Settings, load_settings


def bench_settings(workdir: Path, **environ: str) -> Settings:
    """The default settings, on a SQLite file in ``workdir``; ``environ`` overrides."""
    env = {
        "PEERDESK_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'peerdesk.db'}",
        "PEERDESK_DEMO_TRANSCRIPT_PATH": str(workdir / "demo.jsonl"),
        "PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES": "published,in_review",
        **environ,
    }
    return load_settings(None, environ=env, cwd=workdir)


@asynccontextmanager
async def bench_runtime(workdir: Path, **environ: str) -> AsyncIterator[Runtime]:
    workdir.mkdir(parents=True, exist_ok=True)
    rt = await build_runtime(bench_settings(workdir, **environ))
    try:
        yield rt
    finally:
        await rt.close()

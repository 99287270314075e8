"""Detection: messages per second of the full detector (lexicon + embedding + trained
model, as ``peerdesk run`` wires it) against the raw embedder encoding the same messages
in the same batches, the floor the detector stands on."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.figures import Figure, at_least
from bench.ingest import chat_texts
from bench.runtime import bench_runtime


def rate(work: Callable[[Sequence[str]], Any], batches: Sequence[Sequence[str]]) -> float:
    """Messages per second for ``work`` applied to each batch in turn."""
    start = time.perf_counter()
    for batch in batches:
        work(batch)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed


def compare(
    detect: Callable[[Sequence[str]], Any],
    embed: Callable[[Sequence[str]], Any],
    texts: Sequence[str],
    *,
    batch: int,
    rounds: int,
) -> tuple[float, float]:
    """(best detector rate, best embedder rate), alternating rounds so that both see the
    same machine conditions."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    detector, embedder = 0.0, 0.0
    for _ in range(rounds):
        embedder = max(embedder, rate(embed, batches))
        detector = max(detector, rate(detect, batches))
    return detector, embedder


async def run(workdir: Path, *, messages: int, rounds: int) -> list[Figure]:
    async with bench_runtime(workdir) as rt:
        embedder = rt.faq.embedder
        if embedder is None:
            raise RuntimeError("detection bench: the default settings have no embedder")
        # The runtime may wrap the detector to swap it live (bot/feedback.py).
        detector: Any = getattr(rt.detector, "current", rt.detector)
        if not hasattr(detector, "detect_many"):
            raise RuntimeError(f"detection bench: {type(detector).__name__} is not the trained one")
        texts = chat_texts()[:messages]
        embedder.recent_size = 0  # both sides embed every message
        detector.detect_many(texts[:8])  # prototype vectors, first-call costs
        embedder.embed(texts[:8])
        figures = []
        for batch in (1, 32):
            ours, floor = compare(
                detector.detect_many, embedder.embed, texts, batch=batch, rounds=rounds
            )
            figures.append(
                Figure(
                    f"detection: full detector, batches of {batch}",
                    ours,
                    "msgs/s",
                    baseline=floor,
                    baseline_label=f"{embedder.name} embedding only",
                    target="≥ 0.7× embedder",
                    met=at_least(ours / floor, 0.7),
                    note=f"{len(texts)} dataset messages, best of {rounds}",
                )
            )
    return figures

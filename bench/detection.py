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
from bot import detector as detector_module


def compare(
    detect: Callable[[Sequence[str]], Any],
    embed: Callable[[Sequence[str]], Any],
    texts: Sequence[str],
    *,
    batch: int,
    rounds: int,
) -> tuple[float, float]:
    """(detector rate, embedder rate) over all rounds. The two take turns every 32
    messages, so a slow spell of a shared machine (seconds long, seen on these machines)
    falls on both alike; the ratio of the totals is then steady where best-of-rounds of
    whole passes was not (0.60x to 0.75x for the same model on one morning). The words
    cache is emptied before each of the detector's turns: in use, a message's words are
    worked out once, not once per round."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    per_turn = max(1, 32 // batch)
    turns = [batches[i : i + per_turn] for i in range(0, len(batches), per_turn)]
    detector_seconds = embedder_seconds = 0.0
    for _ in range(rounds):
        for turn in turns:
            embedder_seconds += _seconds(embed, turn)
            detector_module._match_words.cache_clear()
            detector_seconds += _seconds(detect, turn)
    done = len(texts) * rounds
    return done / detector_seconds, done / embedder_seconds


def _seconds(work: Callable[[Sequence[str]], Any], batches: Sequence[Sequence[str]]) -> float:
    start = time.perf_counter()
    for batch in batches:
        work(batch)
    return time.perf_counter() - start


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
                    note=f"{len(texts)} dataset messages, {rounds} rounds, taking turns",
                )
            )
    return figures

"""FAQ search: latency with 100, 1,000 and 10,000 entries, and how it grows, against an
SQLite FTS5 query over the same texts.

The bigger FAQs are made from the 31 seed entries: each copy's question variants get
words of other entries mixed in (so the words' statistics change as in a bigger FAQ),
and its vectors are the seed variants' vectors with noise. Only the seed variants are
embedded with the real model: the cost of a search does not depend on the vectors'
values, and embedding 300,000 variants would take most of an hour.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.figures import Figure, at_most, percentile
from bench.procs import ROOT
from bot.settings import load_settings
from knowledge_base import CONTENT_DIR, Entry, SearchIndex, load_dir
from knowledge_base.embedder import Embedder, Vectors, make_embedder
from knowledge_base.entry import LANGUAGES
from knowledge_base.search import embed_entries, variant_texts

DEVSET = ROOT / "knowledge_base" / "eval" / "devset.jsonl"
STATUSES = ("published", "in_review")
_WORDS = re.compile(r"\w+", re.UNICODE)


def queries(n: int) -> list[tuple[str, str]]:
    """(text, language) of the first ``n`` questions of the search dev set."""
    rows = [json.loads(line) for line in DEVSET.read_text("utf-8").splitlines() if line.strip()]
    random.Random(1).shuffle(rows)
    return [(r["text"], r["language"]) for r in rows[:n]]


def grow(
    seed: Sequence[Entry], vectors: dict[str, Vectors], size: int, *, rng: random.Random
) -> tuple[list[Entry], dict[str, Vectors]]:
    """``size`` entries: the seed, then variants of it (see the module's docstring)."""
    vocabulary = sorted(
        {w for e in seed for qs in e.questions.values() for q in qs for w in _WORDS.findall(q)}
    )
    noise = np.random.default_rng(rng.randrange(1 << 30))
    entries: list[Entry] = []
    out: dict[str, Vectors] = {}
    for i in range(size):
        base = seed[i % len(seed)]
        if i < len(seed):
            entries.append(base)
            out[base.id] = vectors[base.id]
            continue
        questions = {
            lang: tuple(f"{q} {' '.join(rng.sample(vocabulary, 3))}" for q in qs)
            for lang, qs in base.questions.items()
        }
        entry = dataclasses.replace(base, id=f"{base.id}-{i}", questions=questions)
        matrix = vectors[base.id] + noise.normal(0, 0.05, vectors[base.id].shape)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        entries.append(entry)
        out[entry.id] = matrix.astype(np.float32)
    return entries, out


def fts5(entries: Sequence[Entry]) -> Callable[[str], list[str]]:
    """An in-memory FTS5 table over each entry's questions and answer per language (the
    texts BM25 indexes), and a query function: any of the words, best BM25 first."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(entry_id UNINDEXED, body, "
        "tokenize = 'unicode61 remove_diacritics 2')"
    )
    conn.executemany(
        "INSERT INTO docs VALUES (?, ?)",
        [
            (e.id, " ".join([*e.questions.get(lang, ()), e.answers.get(lang, "")]))
            for e in entries
            for lang in LANGUAGES
            if e.questions.get(lang) or e.answers.get(lang)
        ],
    )
    conn.commit()

    def search(query: str) -> list[str]:
        words = {w.casefold() for w in _WORDS.findall(query)}
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in sorted(words))
        rows = conn.execute(
            "SELECT entry_id FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT 3", (match,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    return search


def latencies(search: Callable[[str, str], Any], asked: Sequence[tuple[str, str]]) -> list[float]:
    out = []
    for text, language in asked:
        start = time.perf_counter()
        search(text, language)
        out.append((time.perf_counter() - start) * 1000)
    return out


def seed_vectors(embedder: Embedder) -> tuple[list[Entry], dict[str, Vectors]]:
    seed = load_dir(CONTENT_DIR)
    return seed, embed_entries(seed, embedder)


def run(*, sizes: Sequence[int], n_queries: int) -> list[Figure]:
    kb = load_settings(None, environ={}).knowledge_base
    embedder = make_embedder(kb.embedder)
    if embedder is None:
        raise RuntimeError("search bench: the default settings have no embedder")
    seed, vectors = seed_vectors(embedder)
    embedder.recent_size = 0  # every query is embedded, as a new chat message would be
    asked = queries(n_queries)
    p50: dict[int, float] = {}
    figures: list[Figure] = []
    for size in sizes:
        entries, grown = grow(seed, vectors, size, rng=random.Random(size))
        index = SearchIndex(
            entries,
            embedder=embedder,
            vectors=grown,
            mode=kb.search_mode,
            lexical_weight=kb.lexical_weight,
            min_score=kb.min_score,
        )
        floor = fts5(entries)

        def ours(text: str, language: str, index: SearchIndex = index) -> Any:
            return index.search(text, top=3, statuses=STATUSES, language=language)

        def theirs_(text: str, _language: str, floor: Callable[[str], list[str]] = floor) -> Any:
            return floor(text)

        ours("warm up", "en")
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(2):  # alternate, so that both see the same machine
            mine += latencies(ours, asked)
            theirs += latencies(theirs_, asked)
        p50[size] = percentile(mine, 50)
        variants = sum(len(variant_texts(e)) for e in entries)
        figures.append(
            Figure(
                f"search: p50 latency, {size:,} entries",
                p50[size],
                "ms",
                baseline=percentile(theirs, 50),
                baseline_label="SQLite FTS5 query, same texts",
                note=f"{kb.search_mode} search, {variants:,} variants, {len(asked)} queries ×2",
            )
        )
    small, big = min(sizes), max(sizes)
    growth = p50[big] / p50[small]
    figures.append(
        Figure(
            f"search: p50 at {big:,} entries vs {small:,}",
            p50[big],
            "ms",
            baseline=p50[small],
            baseline_label=f"{small:,} entries",
            target="≤ 2× at 100",
            met=at_most(growth, 2.0),
        )
    )
    return figures

"""How well FAQ search finds the right entry: recall@1, recall@3 and MRR per language on
a labelled set of chat questions (``eval/devset.jsonl``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from knowledge_base.entry import LANGUAGES
from knowledge_base.search import SearchIndex

DEVSET = Path(__file__).parent / "eval" / "devset.jsonl"


@dataclass(frozen=True)
class Question:
    id: str
    language: str
    text: str
    topic: str


@dataclass(frozen=True)
class Scores:
    count: int
    recall_at_1: float
    recall_at_3: float
    mrr: float


def load_devset(path: Path = DEVSET) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append(Question(item["id"], item["language"], item["text"], item["topic"]))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}: line {number}: {exc}") from None
    return questions


def evaluate(index: SearchIndex, questions: Sequence[Question]) -> dict[str, Scores]:
    """Scores per language and for all questions together (key ``all``)."""
    ranks: dict[str, list[int | None]] = {lang: [] for lang in LANGUAGES}
    for q in questions:
        hits = index.search(q.text, top=10, language=q.language)
        rank = next((i for i, h in enumerate(hits, start=1) if h.entry.topic == q.topic), None)
        ranks.setdefault(q.language, []).append(rank)
    ranks["all"] = [r for lang in LANGUAGES for r in ranks[lang]]
    out = {}
    for key, values in ranks.items():
        n = len(values)
        if not n:
            continue
        out[key] = Scores(
            count=n,
            recall_at_1=sum(1 for r in values if r == 1) / n,
            recall_at_3=sum(1 for r in values if r is not None and r <= 3) / n,
            mrr=sum(1 / r for r in values if r is not None) / n,
        )
    return out

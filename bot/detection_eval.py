"""Measuring detection on the labelled dataset (``bot/data/detection/dataset.jsonl``).

Precision, recall and F1 of "drug-related" per language, and recall and precision of
"urgent", on one split of the dataset, for any detector: the shipped one and a
keyword-only baseline (any lexicon term or urgency phrase, no context, no intents), so
every figure is read against what a plain keyword filter would do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.detector import Lexicon, contains, match_words

DEFAULT_DATASET = Path(__file__).parent / "data" / "detection" / "dataset.jsonl"
LANGUAGES = ("nl", "fr", "en")


class DatasetError(ValueError):
    """The dataset file is malformed; the message names the line."""


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    language: str
    drug_related: bool
    urgent: bool
    split: str
    category: str = ""
    batch: str = "first"  # the batch it was written in (its provenance says; none: first)


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    urgent: bool


@dataclass(frozen=True)
class Scores:
    """Figures for one group of items (a language, or all)."""

    n: int
    positives: int
    true_pos: int
    false_pos: int
    false_neg: int
    urgent: int
    urgent_found: int
    urgent_flagged: int  # urgent items at least flagged (they reach the queue)
    false_urgent: int

    @property
    def precision(self) -> float:
        found = self.true_pos + self.false_pos
        return self.true_pos / found if found else 0.0

    @property
    def recall(self) -> float:
        return self.true_pos / self.positives if self.positives else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def urgent_recall(self) -> float:
        return self.urgent_found / self.urgent if self.urgent else 0.0

    @property
    def urgent_precision(self) -> float:
        marked = self.urgent_found + self.false_urgent
        return self.urgent_found / marked if marked else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "positives": self.positives,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "urgent": self.urgent,
            "urgent_recall": round(self.urgent_recall, 4),
            "urgent_precision": round(self.urgent_precision, 4),
            "urgent_flagged": self.urgent_flagged,
        }


_BATCH = re.compile(r"\b([a-z]+) batch\b")


def batch_of(provenance: str) -> str:
    """The batch an item's provenance names ("...; fourth batch; ..." -> "fourth"); the
    first batch's items name none."""
    found = _BATCH.search(provenance)
    return found.group(1) if found else "first"


def load_dataset(path: Path = DEFAULT_DATASET) -> list[Item]:
    items: list[Item] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                item = Item(
                    id=str(raw["id"]),
                    text=str(raw["text"]),
                    language=str(raw["language"]),
                    drug_related=bool(raw["drug_related"]),
                    urgent=bool(raw["urgent"]),
                    split=str(raw["split"]),
                    category=str(raw.get("category", "")),
                    batch=batch_of(str(raw.get("provenance", ""))),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{number}: {exc}") from None
            if item.id in seen:
                raise DatasetError(f"{path}:{number}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    return items


def select(items: Iterable[Item], split: str) -> list[Item]:
    """``split`` is train, test or all."""
    return [i for i in items if split == "all" or i.split == split]


def score(items: Sequence[Item], verdicts: Sequence[Verdict]) -> Scores:
    tp = fp = fn = urgent_found = urgent_flagged = false_urgent = 0
    for item, verdict in zip(items, verdicts, strict=True):
        if verdict.flagged and item.drug_related:
            tp += 1
        elif verdict.flagged:
            fp += 1
        elif item.drug_related:
            fn += 1
        if item.urgent:
            urgent_found += verdict.urgent
            urgent_flagged += verdict.flagged or verdict.urgent
        elif verdict.urgent:
            false_urgent += 1
    return Scores(
        n=len(items),
        positives=sum(i.drug_related for i in items),
        true_pos=tp,
        false_pos=fp,
        false_neg=fn,
        urgent=sum(i.urgent for i in items),
        urgent_found=urgent_found,
        urgent_flagged=urgent_flagged,
        false_urgent=false_urgent,
    )


def evaluate(items: Sequence[Item], judge: Callable[[str], Verdict]) -> dict[str, Scores]:
    """Scores per language and for all items together (key "all")."""
    return by_language(items, [judge(item.text) for item in items])


def by_language(items: Sequence[Item], verdicts: Sequence[Verdict]) -> dict[str, Scores]:
    """Scores of given verdicts per language and for all items together (key "all")."""
    out = {}
    for language in (*LANGUAGES, "all"):
        pairs = [
            (i, v) for i, v in zip(items, verdicts, strict=True) if language in ("all", i.language)
        ]
        if pairs:
            group, group_verdicts = zip(*pairs, strict=True)
            out[language] = score(group, group_verdicts)
    return out


def keyword_baseline(lexicon: Lexicon) -> Callable[[str], Verdict]:
    """The plain keyword filter: any substance term, slang or emoji flags a message, and
    any urgency phrase makes it urgent; no context rules, no intents, no weights."""

    def judge(text: str) -> Verdict:
        words = match_words(text)
        urgent = any(contains(words, phrase) for phrase in lexicon.urgent)
        flagged = urgent or any(contains(words, term.words) for term in lexicon.terms)
        flagged = flagged or any(symbol in text for symbol in lexicon.emoji)
        return Verdict(flagged=flagged, urgent=urgent)

    return judge


def table(results: dict[str, dict[str, Scores]]) -> str:
    """A plain-text table: one row per (detector, language)."""
    header = (
        f"{'detector':<10} {'lang':<4} {'n':>4} {'pos':>4} {'prec':>6} {'recall':>6} "
        f"{'F1':>6} {'urg':>4} {'urgR':>6} {'urgP':>6}"
    )
    lines = [header, "-" * len(header)]
    for name, by_language in results.items():
        for language, s in by_language.items():
            lines.append(
                f"{name:<10} {language:<4} {s.n:>4} {s.positives:>4} {s.precision:>6.3f} "
                f"{s.recall:>6.3f} {s.f1:>6.3f} {s.urgent:>4} {s.urgent_recall:>6.3f} "
                f"{s.urgent_precision:>6.3f}"
            )
    return "\n".join(lines)

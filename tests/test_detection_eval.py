"""Scoring detection on a labelled dataset, and the keyword-only baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.detection_eval import (
    DEFAULT_DATASET,
    DatasetError,
    Item,
    Verdict,
    batch_of,
    by_language,
    evaluate,
    keyword_baseline,
    load_dataset,
    score,
    select,
    table,
)
from bot.detector import Lexicon


def item(text: str, *, drug: bool, urgent: bool = False, lang: str = "nl") -> Item:
    return Item(id=text, text=text, language=lang, drug_related=drug, urgent=urgent, split="test")


def test_scores_count_hits_misses_and_urgency() -> None:
    items = [
        item("a", drug=True),
        item("b", drug=True, urgent=True),
        item("c", drug=True, urgent=True),
        item("d", drug=False),
        item("e", drug=False),
    ]
    verdicts = [
        Verdict(flagged=True, urgent=False),  # hit
        Verdict(flagged=True, urgent=True),  # hit, urgent found
        Verdict(flagged=False, urgent=False),  # miss, urgent missed
        Verdict(flagged=True, urgent=True),  # false alarm, false urgent
        Verdict(flagged=False, urgent=False),
    ]
    s = score(items, verdicts)
    assert (s.true_pos, s.false_pos, s.false_neg) == (2, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert (s.urgent, s.urgent_found, s.urgent_flagged, s.false_urgent) == (2, 1, 1, 1)
    assert s.urgent_recall == 0.5 and s.urgent_precision == 0.5


def test_empty_groups_score_zero_instead_of_dividing_by_zero() -> None:
    s = score([item("a", drug=False)], [Verdict(False, False)])
    assert (s.precision, s.recall, s.f1, s.urgent_recall) == (0.0, 0.0, 0.0, 0.0)


def test_evaluate_groups_by_language_and_all() -> None:
    items = [item("x", drug=True, lang="nl"), item("y", drug=False, lang="fr")]
    results = evaluate(items, lambda text: Verdict(flagged=text == "x", urgent=False))
    assert set(results) == {"nl", "fr", "all"}
    assert results["nl"].f1 == 1.0 and results["all"].n == 2
    assert "nl" in table({"mine": results})


def test_the_keyword_baseline_ignores_context() -> None:
    judge = keyword_baseline(Lexicon.load())
    assert judge("een glas coke zero graag").flagged  # the false friend fools it
    assert judge("hij ademt niet meer").urgent
    assert not judge("wie gaat er zaterdag mee naar zee?").flagged


def test_a_malformed_dataset_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = {"id": "1", "text": "t", "language": "nl", "drug_related": True}
    good.update(urgent=False, split="test")
    path.write_text(json.dumps(good) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d.jsonl:2"):
        load_dataset(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="duplicate id"):
        load_dataset(path)


def test_the_shipped_dataset_is_large_balanced_and_has_a_held_back_split() -> None:
    items = load_dataset(DEFAULT_DATASET)
    assert len(items) >= 600
    for language in ("nl", "fr", "en"):
        mine = [i for i in items if i.language == language]
        positive = sum(i.drug_related for i in mine) / len(mine)
        assert 0.3 <= positive <= 0.5, language
        assert sum(i.urgent for i in mine) >= 30, language
        assert all(i.drug_related for i in mine if i.urgent), language
        test = select(mine, "test")
        assert 0.15 <= len(test) / len(mine) <= 0.40, language
    assert len({i.text.casefold() for i in items}) == len(items)


def test_each_item_knows_its_batch_from_its_provenance(tmp_path: Path) -> None:
    base = {"language": "nl", "drug_related": False, "urgent": False, "split": "train"}
    lines = [
        {**base, "id": "a", "text": "a", "provenance": "authored for peerdesk"},
        {**base, "id": "b", "text": "b", "provenance": "authored; fourth batch; sport"},
        {**base, "id": "c", "text": "c"},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert [i.batch for i in load_dataset(path)] == ["first", "fourth", "first"]
    assert batch_of("x; seventh batch") == "seventh" and batch_of("") == "first"
    train = select(load_dataset(DEFAULT_DATASET), "train")
    assert {i.batch for i in train} == {"first", "second", "fourth", "seventh", "ninth"}


def test_scores_of_given_verdicts_by_language() -> None:
    items = [item("a", drug=True), item("b", drug=False, lang="fr")]
    verdicts = [Verdict(flagged=True, urgent=False), Verdict(flagged=True, urgent=False)]
    scores = by_language(items, verdicts)
    assert set(scores) == {"nl", "fr", "all"}
    assert scores["nl"].precision == 1.0 and scores["fr"].false_pos == 1
    assert scores["all"].precision == 0.5

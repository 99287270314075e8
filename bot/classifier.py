"""The trained layer of detection: lexicon signals + meaning, combined by a small model.

For each message: the lexicon detector's signals (substance terms strong and weak, false
friends set aside by context, question intents, combinations, urgency phrases), the
similarity in meaning to intent prototypes (``data/detection/prototypes.toml``), and the
message's embedding from the knowledge base's embedder, and its similarity to the
nearest FAQ question variant (the live FAQ's when it is indexed by meaning, else the
shipped content's). Two logistic regressions read
them: one says "drug-related", one says "urgent". Urgency phrases still make a message
urgent on their own (a rule never unlearned), the model adds the paraphrases.

The model is trained by ``peerdesk detect train`` (scikit-learn) and shipped as a small
``.npz`` file, so startup needs no training and prediction needs only numpy. Detecting
one message costs one embedding plus a dot product.
"""

from __future__ import annotations

import io
import json
import logging
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.detector import STRONG_WEIGHT, Detector, Lexicon, LexiconError, MessageDetector
from bot.models import Detection, LexiconEdit, Reason
from bot.settings import Settings
from knowledge_base import CONTENT_DIR, load_dir
from knowledge_base.embedder import Embedder
from knowledge_base.search import Questions

logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data" / "detection"
DEFAULT_MODEL = DATA / "model.npz"
DEFAULT_PROTOTYPES = DATA / "prototypes.toml"
# Bumped when the features change: a model of another version is not used.
FEATURE_VERSION = 2
LEXICAL_FEATURES = (
    "lexicon_score",
    "strong_terms",
    "weak_terms",
    "intents",
    "combination",
    "urgent_phrase",
    "false_friend",
    "substances",
)


def model_file(settings: Settings) -> Path:
    """The model the settings name (``detection.model_path``), else the shipped one."""
    return Path(settings.detection.model_path) if settings.detection.model_path else DEFAULT_MODEL


class ModelError(ValueError):
    """A model file is missing, malformed or made for other features or another embedder."""


@dataclass(frozen=True)
class Prototypes:
    """Sentences per intent; ``labels`` are what volunteers read."""

    sentences: dict[str, tuple[str, ...]]
    labels: dict[str, str]

    @classmethod
    def load(cls, path: Path = DEFAULT_PROTOTYPES) -> Prototypes:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        sentences = {k: tuple(v["sentences"]) for k, v in data.items()}
        labels = {k: str(v.get("label", k)) for k, v in data.items()}
        return cls(sentences=sentences, labels=labels)

    @property
    def intents(self) -> tuple[str, ...]:
        return tuple(self.sentences)


@dataclass(frozen=True)
class Signals:
    """Everything the model reads about one message, and what explains it."""

    lexicon: Detection
    vector: np.ndarray[Any, Any]
    similarity: dict[str, float]  # intent -> best similarity to its prototypes
    closest: dict[str, str]  # intent -> the prototype sentence that was closest
    faq_similarity: float = 0.0
    faq_question: tuple[str, str, str] | None = None  # (entry id, language, question)


def _lexical(d: Detection) -> list[float]:
    kinds = [r.kind for r in d.reasons]
    return [
        d.score,
        float(sum(1 for r in d.reasons if r.kind == "substance" and r.weight >= STRONG_WEIGHT)),
        float(sum(1 for r in d.reasons if r.kind == "substance" and r.weight < STRONG_WEIGHT)),
        float(sum(1 for r in d.reasons if r.kind == "intent" and r.term != "combination")),
        float(any(r.term == "combination" for r in d.reasons)),
        float("urgent" in kinds),
        float("context" in kinds),
        float(len(d.substances)),
    ]


class Features:
    """Turns texts into the model's input rows.

    ``faq`` gives the FAQ's question variants with their vectors as they are now (the
    running FAQ index); without it, or when it has none in this embedder's space, the
    shipped FAQ content is embedded once and used.
    """

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        prototypes: Prototypes,
        *,
        faq: Callable[[], Questions | None] | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.prototypes = prototypes
        self.faq = faq
        self._proto_vectors: dict[str, np.ndarray[Any, Any]] | None = None
        self._shipped_faq: Questions | None = None

    @property
    def names(self) -> list[str]:
        return [*LEXICAL_FEATURES, *(f"like_{i}" for i in self.prototypes.intents), "like_faq"]

    def _faq_questions(self, dim: int) -> Questions:
        live = self.faq() if self.faq is not None else None
        if live is not None and live.variants and live.matrix.shape[1] == dim:
            return live
        if self._shipped_faq is None:
            self._shipped_faq = Questions.embed(load_dir(CONTENT_DIR), self.embedder)
        return self._shipped_faq

    def _prototype_vectors(self) -> dict[str, np.ndarray[Any, Any]]:
        if self._proto_vectors is None:
            self._proto_vectors = {
                intent: self.embedder.embed(list(sentences))
                for intent, sentences in self.prototypes.sentences.items()
            }
        return self._proto_vectors

    def signals(self, texts: Sequence[str]) -> list[Signals]:
        if not texts:
            return []
        vectors = self.embedder.embed(list(texts))
        protos = self._prototype_vectors()
        faq = self._faq_questions(vectors.shape[1])
        out = []
        for text, vector in zip(texts, vectors, strict=True):
            similarity, closest = {}, {}
            for intent, matrix in protos.items():
                sims = matrix @ vector
                best = int(np.argmax(sims))
                similarity[intent] = float(sims[best])
                closest[intent] = self.prototypes.sentences[intent][best]
            faq_similarity, question = faq.closest(vector)
            out.append(
                Signals(
                    self.detector.detect(text),
                    vector,
                    similarity,
                    closest,
                    faq_similarity=faq_similarity,
                    faq_question=question,
                )
            )
        return out

    def rows(self, signals: Sequence[Signals]) -> np.ndarray[Any, Any]:
        intents = self.prototypes.intents
        return np.array(
            [
                [
                    *_lexical(s.lexicon),
                    *(s.similarity[i] for i in intents),
                    s.faq_similarity,
                    *s.vector,
                ]
                for s in signals
            ],
            dtype=np.float64,
        )


def _sigmoid(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -40, 40))))


@dataclass(frozen=True)
class Model:
    """Two logistic regressions over standardised features, and how they were made."""

    embedder: str
    feature_names: tuple[str, ...]
    mean: np.ndarray[Any, Any]
    scale: np.ndarray[Any, Any]
    weights: np.ndarray[Any, Any]
    bias: float
    urgent_weights: np.ndarray[Any, Any]
    urgent_bias: float
    info: dict[str, Any] = field(default_factory=dict)

    def scores(
        self, rows: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(probability drug-related, probability urgent) per row."""
        z = (rows - self.mean) / self.scale
        return _sigmoid(z @ self.weights + self.bias), _sigmoid(
            z @ self.urgent_weights + self.urgent_bias
        )

    def to_bytes(self) -> bytes:
        meta = {
            "feature_version": FEATURE_VERSION,
            "embedder": self.embedder,
            "feature_names": list(self.feature_names),
            "bias": self.bias,
            "urgent_bias": self.urgent_bias,
            "info": self.info,
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            meta=np.array(json.dumps(meta)),
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            weights=self.weights.astype(np.float32),
            urgent_weights=self.urgent_weights.astype(np.float32),
        )
        return buffer.getvalue()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> Model:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: not a usable detection model ({exc})") from None
        return cls.from_bytes(data, source=str(path))

    @classmethod
    def from_bytes(cls, blob: bytes, *, source: str = "<model>") -> Model:
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {
                    k: data[k].astype(np.float64)
                    for k in ("mean", "scale", "weights", "urgent_weights")
                }
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise ModelError(f"{source}: not a usable detection model ({exc})") from None
        info = meta.get("info") or {}
        if not all(
            isinstance(info.get(k), (int, float)) for k in ("threshold", "urgent_threshold")
        ):
            raise ModelError(f"{source}: the model records no thresholds; retrain it")
        if meta.get("feature_version") != FEATURE_VERSION:
            raise ModelError(
                f"{source}: made for other features; retrain with `peerdesk detect train`"
            )
        return cls(
            embedder=str(meta["embedder"]),
            feature_names=tuple(meta["feature_names"]),
            bias=float(meta["bias"]),
            urgent_bias=float(meta["urgent_bias"]),
            info=dict(info),
            **arrays,
        )


def _f1(truth: np.ndarray[Any, Any], flagged: np.ndarray[Any, Any]) -> float:
    tp = int((truth & flagged).sum())
    wrong = int((~truth & flagged).sum()) + int((truth & ~flagged).sum())
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


# The urgent regression does not read the lexicon's urgency rule (nor the score it sets):
# the rule makes a message urgent anyway, and the model is there for what no phrase
# covers. Trained beside the rule, on messages whose phrases were written from those very
# messages, it learned to trust the rule and was blind where no phrase matched (on the
# held-back split it missed 6 of 40 urgent messages). Without it, it must recognise
# urgency from meaning alone, and its threshold keeps 99 % of urgent messages by itself.
URGENT_BLIND = ("urgent_phrase", "lexicon_score")


def _blind(z: np.ndarray[Any, Any], feature_names: Sequence[str]) -> np.ndarray[Any, Any]:
    """``z`` with the columns the urgent regression must not read set to 0 (the mean)."""
    out = z.copy()
    for name in URGENT_BLIND:
        if name in feature_names:
            out[:, list(feature_names).index(name)] = 0.0
    return out


def choose_thresholds(
    z: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    urgent: np.ndarray[Any, Any],
    *,
    c: float,
    urgent_recall: float = 0.99,
    urgent_rows: np.ndarray[Any, Any] | None = None,
    urgent_z: np.ndarray[Any, Any] | None = None,
) -> tuple[float, float]:
    """Thresholds from 5-fold cross-validated probabilities on the training data (the
    held-back split is never looked at): the one with the best F1 for drug-related, and
    the highest that keeps ``urgent_recall`` of urgent messages (among ``urgent_rows``,
    the rows whose urgency is known) with the urgent model alone, reading ``urgent_z``
    (default ``z``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    def cv(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        return np.asarray(cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1])

    known = urgent_rows if urgent_rows is not None else np.ones(len(z), dtype=bool)
    zu = urgent_z if urgent_z is not None else z
    p, u = cv(z, labels), cv(zu[known], urgent[known])
    grid = [round(float(t), 2) for t in np.arange(0.05, 0.96, 0.01)]
    threshold = max(grid, key=lambda t: (_f1(labels, p >= t), -abs(t - 0.5)))
    wanted = urgent_recall * urgent[known].sum()
    keeping = [t for t in grid if ((u >= t) & urgent[known]).sum() >= wanted]
    return threshold, max(keeping, default=0.05)


def fit(
    rows: np.ndarray[Any, Any],
    labels: Sequence[bool],
    urgent: Sequence[bool | None],
    *,
    embedder: str,
    feature_names: Sequence[str],
    c: float = 0.01,
    info: dict[str, Any] | None = None,
) -> Model:
    """Train both regressions (scikit-learn, balanced classes, strong L2: a few hundred
    messages against hundreds of features) and record the thresholds chosen for them.
    An ``urgent`` label of None (volunteers' feedback says whether a message is
    drug-related, not whether it was urgent) leaves that row out of the urgent one."""
    from sklearn.linear_model import LogisticRegression

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (rows - mean) / scale
    y = np.array(labels, dtype=bool)
    known = np.array([u is not None for u in urgent], dtype=bool)
    yu = np.array([bool(u) for u in urgent], dtype=bool)
    zu = _blind(z, feature_names)
    drug = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z, y)
    urg = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(zu[known], yu[known])
    threshold, urgent_threshold = choose_thresholds(z, y, yu, c=c, urgent_rows=known, urgent_z=zu)
    info = {**(info or {}), "c": c, "threshold": threshold, "urgent_threshold": urgent_threshold}
    return Model(
        embedder=embedder,
        feature_names=tuple(feature_names),
        mean=mean,
        scale=scale,
        weights=drug.coef_[0].astype(np.float64),
        bias=float(drug.intercept_[0]),
        urgent_weights=urg.coef_[0].astype(np.float64),
        urgent_bias=float(urg.intercept_[0]),
        info=info,
    )


def apply_edits(lexicon: Lexicon, edits: Iterable[LexiconEdit]) -> Lexicon:
    """The lexicon with experts' edits; an edit that no longer fits (its substance was
    renamed in the shipped file, say) is skipped with a warning, not fatal."""
    for edit in edits:
        try:
            lexicon = lexicon.with_edits([edit])
        except LexiconError as exc:
            logger.warning("lexicon edit skipped: %s", exc)
    return lexicon


def lexicon_detector(settings: Settings, edits: Iterable[LexiconEdit] = ()) -> Detector:
    return Detector(
        apply_edits(Lexicon.load(), edits),
        threshold=settings.detection.lexicon_threshold,
        default_language=settings.general.default_language,
    )


def make_detector(
    settings: Settings,
    embedder: Embedder | None,
    *,
    faq: Callable[[], Questions | None] | None = None,
    edits: Iterable[LexiconEdit] = (),
    model: Model | None = None,
) -> MessageDetector:
    """The detector the settings ask for: the trained one when its model fits the
    embedder, else (with a warning saying why) the lexicon alone. ``faq`` gives the
    running FAQ's question vectors (see :class:`Features`); ``edits`` are experts'
    lexicon edits; ``model`` replaces the configured model file (a retrained one)."""
    lexicon = lexicon_detector(settings, edits)
    if settings.detection.mode == "lexicon":
        return lexicon
    if embedder is None:
        logger.warning("detection uses the lexicon only: knowledge_base.embedder is none")
        return lexicon
    try:
        features = Features(lexicon, embedder, Prototypes.load(), faq=faq)
        return trained_detector(settings, features, model)
    except ModelError as exc:
        logger.warning("detection uses the lexicon only: %s", exc)
        return lexicon


def trained_detector(
    settings: Settings, features: Features, model: Model | None = None
) -> TrainedDetector:
    """The trained detector with ``model`` (default: the configured file) and the
    thresholds of the settings, or the model's own where the settings say 0."""
    model = model or Model.load(model_file(settings))
    return TrainedDetector(
        features,
        model,
        threshold=settings.detection.threshold or float(model.info["threshold"]),
        urgent_threshold=settings.detection.urgent_threshold
        or float(model.info["urgent_threshold"]),
    )


class TrainedDetector:
    """Detection with the trained model on top of the lexicon; same interface as
    :class:`~bot.detector.Detector` (``detect(text) -> Detection``)."""

    def __init__(
        self, features: Features, model: Model, *, threshold: float, urgent_threshold: float
    ) -> None:
        if model.embedder != features.embedder.name:
            raise ModelError(
                f"the detection model was trained with the {model.embedder} embedder, "
                f"not {features.embedder.name}; retrain with `peerdesk detect train`"
            )
        if list(model.feature_names) != features.names:
            raise ModelError("the detection model was trained on other prototypes; retrain it")
        self.features = features
        self.model = model
        self.threshold = threshold
        self.urgent_threshold = urgent_threshold

    def detect(self, text: str) -> Detection:
        return self.detect_many([text])[0]

    def detect_many(self, texts: Sequence[str]) -> list[Detection]:
        signals = self.features.signals(texts)
        p_drug, p_urgent = self.model.scores(self.features.rows(signals))
        return [
            self._combine(s, float(p), float(u))
            for s, p, u in zip(signals, p_drug, p_urgent, strict=True)
        ]

    def _combine(self, s: Signals, p: float, u: float) -> Detection:
        lexicon = s.lexicon
        rule_urgent = lexicon.urgent
        model_urgent = u >= self.urgent_threshold
        urgent = rule_urgent or model_urgent
        flagged = urgent or p >= self.threshold
        reasons = list(lexicon.reasons)
        intent = max(s.similarity, key=lambda i: s.similarity[i])
        label = self.features.prototypes.labels[intent]
        reasons.append(
            Reason(
                "similar",
                s.closest[intent],
                f"{label} (similarity {s.similarity[intent]:.2f})",
                round(s.similarity[intent], 3),
            )
        )
        if s.faq_question is not None:
            entry_id, _, question = s.faq_question
            reasons.append(
                Reason(
                    "faq",
                    question,
                    f"close to FAQ question of {entry_id} (similarity {s.faq_similarity:.2f})",
                    round(s.faq_similarity, 3),
                )
            )
        reasons.append(
            Reason("model", "classifier", f"drug-related {p:.2f}, urgent {u:.2f}", round(p, 3))
        )
        if model_urgent and not rule_urgent:
            reasons.append(Reason("urgent", "model", f"reads as urgent ({u:.2f})", round(u, 3)))
        return replace(
            lexicon,
            flagged=flagged,
            urgent=urgent,
            score=round(max(p, u if urgent else 0.0), 3),
            reasons=tuple(reasons),
        )

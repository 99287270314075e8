"""The trained layer of detection: lexicon signals + meaning, combined by a small model.

For each message: the lexicon detector's signals (substance terms strong and weak, false
friends set aside by context, question intents, combinations, urgency phrases), the
similarity in meaning to intent prototypes (``data/detection/prototypes.toml``), and the
message's embedding from the knowledge base's embedder. Two logistic regressions read
them: one says "drug-related", one says "urgent". Urgency phrases still make a message
urgent on their own (a rule never unlearned), the model adds the paraphrases.

The model is trained by ``peerdesk detect train`` (scikit-learn) and shipped as a small
``.npz`` file, so startup needs no training and prediction needs only numpy. Detecting
one message costs one embedding plus a dot product.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.detector import STRONG_WEIGHT, Detector, Lexicon, MessageDetector
from bot.models import Detection, Reason
from bot.settings import Settings
from knowledge_base.embedder import Embedder

logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data" / "detection"
DEFAULT_MODEL = DATA / "model.npz"
DEFAULT_PROTOTYPES = DATA / "prototypes.toml"
# Bumped when the features change: a model of another version is not used.
FEATURE_VERSION = 1
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
    """Turns texts into the model's input rows."""

    def __init__(self, detector: Detector, embedder: Embedder, prototypes: Prototypes) -> None:
        self.detector = detector
        self.embedder = embedder
        self.prototypes = prototypes
        self._proto_vectors: dict[str, np.ndarray[Any, Any]] | None = None

    @property
    def names(self) -> list[str]:
        return [*LEXICAL_FEATURES, *(f"like_{i}" for i in self.prototypes.intents)]

    def _prototype_vectors(self) -> dict[str, np.ndarray[Any, Any]]:
        if self._proto_vectors is None:
            self._proto_vectors = {
                intent: self.embedder.embed(list(sentences))
                for intent, sentences in self.prototypes.sentences.items()
            }
        return self._proto_vectors

    def signals(self, texts: Sequence[str]) -> list[Signals]:
        vectors = self.embedder.embed(list(texts)) if texts else np.zeros((0, 0))
        protos = self._prototype_vectors()
        out = []
        for text, vector in zip(texts, vectors, strict=True):
            similarity, closest = {}, {}
            for intent, matrix in protos.items():
                sims = matrix @ vector
                best = int(np.argmax(sims))
                similarity[intent] = float(sims[best])
                closest[intent] = self.prototypes.sentences[intent][best]
            out.append(Signals(self.detector.detect(text), vector, similarity, closest))
        return out

    def rows(self, signals: Sequence[Signals]) -> np.ndarray[Any, Any]:
        intents = self.prototypes.intents
        return np.array(
            [
                [*_lexical(s.lexicon), *(s.similarity[i] for i in intents), *s.vector]
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

    def save(self, path: Path) -> None:
        meta = {
            "feature_version": FEATURE_VERSION,
            "embedder": self.embedder,
            "feature_names": list(self.feature_names),
            "bias": self.bias,
            "urgent_bias": self.urgent_bias,
            "info": self.info,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                meta=np.array(json.dumps(meta)),
                mean=self.mean.astype(np.float32),
                scale=self.scale.astype(np.float32),
                weights=self.weights.astype(np.float32),
                urgent_weights=self.urgent_weights.astype(np.float32),
            )

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> Model:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {
                    k: data[k].astype(np.float64)
                    for k in ("mean", "scale", "weights", "urgent_weights")
                }
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a usable detection model ({exc})") from None
        if meta.get("feature_version") != FEATURE_VERSION:
            raise ModelError(
                f"{path}: made for other features; retrain with `peerdesk detect train`"
            )
        return cls(
            embedder=str(meta["embedder"]),
            feature_names=tuple(meta["feature_names"]),
            bias=float(meta["bias"]),
            urgent_bias=float(meta["urgent_bias"]),
            info=dict(meta.get("info") or {}),
            **arrays,
        )


def _f1(truth: np.ndarray[Any, Any], flagged: np.ndarray[Any, Any]) -> float:
    tp = int((truth & flagged).sum())
    wrong = int((~truth & flagged).sum()) + int((truth & ~flagged).sum())
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


def choose_thresholds(
    z: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    urgent: np.ndarray[Any, Any],
    *,
    c: float,
    urgent_recall: float = 0.98,
) -> tuple[float, float]:
    """Thresholds from 5-fold cross-validated probabilities on the training data (the
    held-back split is never looked at): the one with the best F1 for drug-related, and
    the highest that keeps ``urgent_recall`` of urgent messages."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    def cv(y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        return np.asarray(cross_val_predict(model, z, y, cv=folds, method="predict_proba")[:, 1])

    p, u = cv(labels), cv(urgent)
    grid = [round(float(t), 2) for t in np.arange(0.05, 0.96, 0.01)]
    threshold = max(grid, key=lambda t: (_f1(labels, p >= t), -abs(t - 0.5)))
    keeping = [t for t in grid if ((u >= t) & urgent).sum() >= urgent_recall * urgent.sum()]
    return threshold, max(keeping, default=0.05)


def fit(
    rows: np.ndarray[Any, Any],
    labels: Sequence[bool],
    urgent: Sequence[bool],
    *,
    embedder: str,
    feature_names: Sequence[str],
    c: float = 0.01,
    info: dict[str, Any] | None = None,
) -> Model:
    """Train both regressions (scikit-learn, balanced classes, strong L2: a few hundred
    messages against hundreds of features) and record the thresholds chosen for them."""
    from sklearn.linear_model import LogisticRegression

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (rows - mean) / scale
    y, yu = np.array(labels, dtype=bool), np.array(urgent, dtype=bool)
    drug = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z, y)
    urg = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z, yu)
    threshold, urgent_threshold = choose_thresholds(z, y, yu, c=c)
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


def lexicon_detector(settings: Settings) -> Detector:
    return Detector(
        Lexicon.load(),
        threshold=settings.detection.lexicon_threshold,
        default_language=settings.general.default_language,
    )


def make_detector(settings: Settings, embedder: Embedder | None) -> MessageDetector:
    """The detector the settings ask for: the trained one when its model fits the
    embedder, else (with a warning saying why) the lexicon alone."""
    lexicon = lexicon_detector(settings)
    if settings.detection.mode == "lexicon":
        return lexicon
    if embedder is None:
        logger.warning("detection uses the lexicon only: knowledge_base.embedder is none")
        return lexicon
    try:
        return TrainedDetector(
            Features(lexicon, embedder, Prototypes.load()),
            Model.load(model_file(settings)),
            threshold=settings.detection.threshold,
            urgent_threshold=settings.detection.urgent_threshold,
        )
    except ModelError as exc:
        logger.warning("detection uses the lexicon only: %s", exc)
        return lexicon


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

"""The trained layer of detection: lexicon signals + meaning, combined by a small model.

For each message: the lexicon detector's signals (substance terms strong and weak, false
friends set aside by context, question intents, combinations, urgency phrases), the
similarity in meaning to intent prototypes (``data/detection/prototypes.toml``), and the
message's embedding from the knowledge base's embedder, and its similarity to the
nearest FAQ question variant (the live FAQ's when it is indexed by meaning, else the
shipped content's), and the character n-grams of its words (hashed, see
:func:`char_ngrams`: what spelling and slang look like, which a sentence embedding
blurs). Two logistic regressions read them: one says "drug-related", one says "urgent".
Urgency phrases still make a message
urgent on their own (a rule never unlearned), the model adds the paraphrases.

The model is trained by ``peerdesk detect train`` (scikit-learn) and shipped as a small
``.npz`` file, so startup needs no training and prediction needs only numpy. Detecting
one message costs one embedding plus a dot product (and a sparse one for the n-grams).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import tomllib
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.detector import (
    STRONG_WEIGHT,
    Detector,
    Lexicon,
    LexiconError,
    MessageDetector,
    match_words,
)
from bot.models import Detection, LexiconEdit, Reason
from bot.settings import Settings
from knowledge_base import CONTENT_DIR, load_dir
from knowledge_base.embedder import Embedder
from knowledge_base.search import Questions

logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data" / "detection"
DEFAULT_MODEL = DATA / "model.npz"
DEFAULT_PROTOTYPES = DATA / "prototypes.toml"
# Bumped when the features change: a model of another version is not used. Version 3
# added the hashed character n-grams; a version 2 model (none) is still read, as a model
# whose n-gram weights are all 0.
FEATURE_VERSION = 3
READABLE_VERSIONS = (2, 3)
# The character n-grams the drug-related regression reads: 2 to 5 characters inside each
# word padded with spaces (" xtc " gives " x", "xt", ..., "xtc "), plus the word itself,
# hashed (CRC-32) into CHAR_FEATURES buckets. A fixed hash, not a vocabulary, so the model
# file holds only weights and prediction needs neither scikit-learn nor a word list.
CHAR_FEATURES = 2**16
CHAR_NGRAMS = (2, 5)
# How much the n-gram block weighs against the standardised features (each of variance
# 1) under the one L2 penalty: each message's n-gram vector has length 1, so without a
# factor the regression would all but ignore it. Chosen by leave-one-batch-out
# cross-validation on the train split (`peerdesk detect cv`, docs/detection.md).
CHAR_WEIGHT = 20.0
# How much the urgent score leans on the nearest training messages: the urgent logit
# gains NEIGHBOUR_WEIGHT times (similarity to the closest urgent training message minus
# similarity to the closest other one). A paraphrase of an urgent message no phrase and
# no n-gram covers still sits near one in meaning. Chosen by leave-one-batch-out
# cross-validation on the train split (docs/detection.md); 0 switches it off.
NEIGHBOUR_WEIGHT = 20.0
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


Grams = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
"""A message's n-grams: (bucket indices, values), the values of unit length."""
NO_GRAMS: Grams = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


@functools.lru_cache(maxsize=2**16)
def _word_buckets(word: str, n_features: int) -> np.ndarray[Any, Any]:
    """The hash buckets of one word's n-grams (chat repeats its words: cached; the
    array is shared, never changed)."""
    padded = f" {word} "
    pieces = [f"w:{word}"]
    low, high = CHAR_NGRAMS
    for n in range(low, high + 1):
        pieces.extend(padded[k : k + n] for k in range(max(1, len(padded) - n + 1)))
    buckets = [zlib.crc32(piece.encode("utf-8")) % n_features for piece in pieces]
    return np.array(buckets, dtype=np.int64)


def char_ngrams(text: str, n_features: int = CHAR_FEATURES) -> Grams:
    """The hashed character n-grams of ``text``'s words as the lexicon sees them
    (:func:`~bot.detector.match_words`: folded, leetspeak undone, chat spellings made
    equal): counts damped to 1 + log(count), scaled to length 1."""
    words = match_words(text)
    if not words:
        return NO_GRAMS
    buckets = np.concatenate([_word_buckets(word, n_features) for word in words])
    index, counts = np.unique(buckets, return_counts=True)
    values = 1.0 + np.log(counts)
    return index, values / np.linalg.norm(values)


@dataclass(frozen=True)
class Signals:
    """Everything the model reads about one message, and what explains it."""

    lexicon: Detection
    vector: np.ndarray[Any, Any]
    similarity: dict[str, float]  # intent -> best similarity to its prototypes
    closest: dict[str, str]  # intent -> the prototype sentence that was closest
    faq_similarity: float = 0.0
    faq_question: tuple[str, str, str] | None = None  # (entry id, language, question)
    grams: Grams = NO_GRAMS


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
        # One product per intent for the whole batch, not one per message and intent.
        best = {intent: np.argmax(vectors @ m.T, axis=1) for intent, m in protos.items()}
        out = []
        for n, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            similarity, closest = {}, {}
            for intent, matrix in protos.items():
                k = int(best[intent][n])
                similarity[intent] = float(matrix[k] @ vector)
                closest[intent] = self.prototypes.sentences[intent][k]
            faq_similarity, question = faq.closest(vector)
            out.append(
                Signals(
                    self.detector.detect(text),
                    vector,
                    similarity,
                    closest,
                    faq_similarity=faq_similarity,
                    faq_question=question,
                    grams=char_ngrams(text),
                )
            )
        return out

    def rows(self, signals: Sequence[Signals]) -> np.ndarray[Any, Any]:
        intents = self.prototypes.intents
        if not signals:
            return np.zeros((0, len(self.names)))  # no embedding to say how wide
        dense = np.array(
            [
                [*_lexical(s.lexicon), *(s.similarity[i] for i in intents), s.faq_similarity]
                for s in signals
            ],
            dtype=np.float64,
        )
        vectors = np.array([s.vector for s in signals], dtype=np.float64)
        return np.hstack([dense, vectors])


def grams_matrix(grams: Sequence[Grams], n_features: int = CHAR_FEATURES) -> Any:
    """The n-grams as a sparse matrix (scipy, for training only)."""
    from scipy.sparse import csr_matrix

    indptr = np.cumsum([0, *(len(i) for i, _ in grams)])
    index = np.concatenate([i for i, _ in grams]) if grams else np.zeros(0, dtype=np.int64)
    values = np.concatenate([v for _, v in grams]) if grams else np.zeros(0)
    return csr_matrix((values, index, indptr), shape=(len(grams), n_features))


def _unit(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _sigmoid(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -40, 40))))


@dataclass(frozen=True)
class Model:
    """Two logistic regressions over standardised features, and how they were made. The
    n-grams are read by both: ``char_weights`` and ``urgent_char_weights`` hold a weight
    per hash bucket (empty for a model without them, such as a version 2 file)."""

    embedder: str
    feature_names: tuple[str, ...]
    mean: np.ndarray[Any, Any]
    scale: np.ndarray[Any, Any]
    weights: np.ndarray[Any, Any]
    bias: float
    urgent_weights: np.ndarray[Any, Any]
    urgent_bias: float
    info: dict[str, Any] = field(default_factory=dict)
    char_weights: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0))
    urgent_char_weights: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0))
    # The training messages' embeddings (unit length) and whether each was urgent: the
    # urgent score's nearest-neighbour term (NEIGHBOUR_WEIGHT). Empty: no such term.
    neighbours: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros((0, 0)))
    neighbour_urgent: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def nearest(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Per row, (similarity to the closest urgent training message, to the closest
        other one); zeros for a model without neighbours. Shape (len(rows), 2)."""
        if not len(self.neighbours) or not self.neighbour_urgent.any():
            return np.zeros((len(rows), 2))
        vectors = _unit(rows[:, len(self.feature_names) :])
        columns, split = self._neighbour_columns
        sims = vectors @ columns
        other = sims[:, split:].max(axis=1) if split < sims.shape[1] else np.full(len(rows), -1.0)
        return np.stack([sims[:, :split].max(axis=1), other], axis=1)

    @functools.cached_property
    def _neighbour_columns(self) -> tuple[np.ndarray[Any, Any], int]:
        # One neighbour per column, the urgent ones first, contiguous: one plain matrix
        # product per batch (about 0.15 ms for one message on these machines).
        order = np.argsort(~self.neighbour_urgent, kind="stable")
        columns = np.ascontiguousarray(self.neighbours[order].T, dtype=np.float32)
        return columns, int(self.neighbour_urgent.sum())

    @property
    def neighbour_weight(self) -> float:
        return float(self.info.get("neighbour_weight", 0.0)) if len(self.neighbours) else 0.0

    def char_logits(self, grams: Sequence[Grams], *, urgent: bool = False) -> np.ndarray[Any, Any]:
        """What the n-grams add to one regression's logit (drug-related, or ``urgent``),
        per message."""
        weights = self.urgent_char_weights if urgent else self.char_weights
        if not len(weights):
            return np.zeros(len(grams))
        return np.array([float(weights[i] @ v) for i, v in grams])

    def scores(
        self,
        rows: np.ndarray[Any, Any],
        grams: Sequence[Grams] | None = None,
        nearest: np.ndarray[Any, Any] | None = None,
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(probability drug-related, probability urgent) per row; ``grams`` are the
        rows' n-grams (none: the n-gram block counts 0); ``nearest`` is
        :meth:`nearest` of the rows when the caller has it already."""
        z = (rows - self.mean) / self.scale
        drug = z @ self.weights + self.bias
        urgent = z @ self.urgent_weights + self.urgent_bias
        if grams is not None:
            drug = drug + self.char_logits(grams)
            urgent = urgent + self.char_logits(grams, urgent=True)
        if self.neighbour_weight:
            near = self.nearest(rows) if nearest is None else nearest
            urgent = urgent + self.neighbour_weight * (near[:, 0] - near[:, 1])
        return _sigmoid(drug), _sigmoid(urgent)

    def to_bytes(self) -> bytes:
        meta = {
            "feature_version": FEATURE_VERSION,
            "embedder": self.embedder,
            "feature_names": list(self.feature_names),
            "bias": self.bias,
            "urgent_bias": self.urgent_bias,
            "char_features": len(self.char_weights),
            "info": self.info,
        }
        # Only the buckets some training message filled have a weight (L2 keeps the others
        # at 0): stored as (bucket, weight) pairs, the file stays small.
        used = np.flatnonzero(self.char_weights)
        urgent_used = np.flatnonzero(self.urgent_char_weights)
        arrays: dict[str, Any] = {}
        if len(self.neighbours):  # float16 is plenty for a cosine and halves the file
            arrays["neighbours"] = self.neighbours.astype(np.float16)
            arrays["neighbour_urgent"] = self.neighbour_urgent.astype(bool)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            meta=np.array(json.dumps(meta)),
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            weights=self.weights.astype(np.float32),
            urgent_weights=self.urgent_weights.astype(np.float32),
            char_index=used.astype(np.int32),
            char_values=self.char_weights[used].astype(np.float32),
            urgent_char_index=urgent_used.astype(np.int32),
            urgent_char_values=self.urgent_char_weights[urgent_used].astype(np.float32),
            **arrays,
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
                n_char = int(meta.get("char_features", 0))
                char = {"char_weights": np.zeros(n_char), "urgent_char_weights": np.zeros(n_char)}
                for name, prefix in (("char_weights", ""), ("urgent_char_weights", "urgent_")):
                    if n_char:
                        index = data[f"{prefix}char_index"].astype(np.int64)
                        char[name][index] = data[f"{prefix}char_values"]
                near: dict[str, np.ndarray[Any, Any]] = {}
                if "neighbours" in data.files:  # since 2026-11-25; older files have none
                    near["neighbours"] = data["neighbours"].astype(np.float32)
                    near["neighbour_urgent"] = data["neighbour_urgent"].astype(bool)
                    shape = near["neighbours"].shape
                    dim = len(arrays["mean"]) - len(meta["feature_names"])
                    if shape[0] != len(near["neighbour_urgent"]) or shape[1:] != (dim,):
                        raise ValueError("its neighbours do not fit its embedding or labels")
        except (OSError, KeyError, ValueError, EOFError, IndexError) as exc:
            raise ModelError(f"{source}: not a usable detection model ({exc})") from None
        info = meta.get("info") or {}
        if not all(
            isinstance(info.get(k), (int, float)) for k in ("threshold", "urgent_threshold")
        ):
            raise ModelError(f"{source}: the model records no thresholds; retrain it")
        if meta.get("feature_version") not in READABLE_VERSIONS or n_char not in (
            0,
            CHAR_FEATURES,
        ):
            raise ModelError(
                f"{source}: made for other features; retrain with `peerdesk detect train`"
            )
        return cls(
            embedder=str(meta["embedder"]),
            feature_names=tuple(meta["feature_names"]),
            bias=float(meta["bias"]),
            urgent_bias=float(meta["urgent_bias"]),
            info=dict(info),
            **char,
            **near,
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
# It does read the n-grams (leave-one-batch-out cross-validation on train: fewer false
# alarms, every urgent message still urgent), which could relearn a phrase's words; the
# 99 % threshold is still chosen with the model alone, so the rule is not relied on.
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
    vectors: np.ndarray[Any, Any] | None = None,
    neighbour_weight: float = 0.0,
) -> tuple[float, float]:
    """Thresholds from 5-fold cross-validated probabilities on the training data (the
    held-back split is never looked at): the one with the best F1 for drug-related, and
    the highest that keeps ``urgent_recall`` of urgent messages (among ``urgent_rows``,
    the rows whose urgency is known) with the urgent model alone, reading ``urgent_z``
    (default ``z``), plus its nearest-neighbour term when ``vectors`` (the rows' unit
    embeddings) and ``neighbour_weight`` are given: each fold's neighbours are the
    other folds' messages, as a new message's are the training messages."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    def splits(x: Any, y: np.ndarray[Any, Any]) -> list[tuple[Any, Any]]:
        return list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))

    def cv(x: Any, y: np.ndarray[Any, Any], folds: list[tuple[Any, Any]]) -> np.ndarray[Any, Any]:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        return np.asarray(cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1])

    known = urgent_rows if urgent_rows is not None else np.ones(len(z), dtype=bool)
    zu = urgent_z if urgent_z is not None else z
    urgent_folds = splits(zu[known], urgent[known])
    p, u = cv(z, labels, splits(z, labels)), cv(zu[known], urgent[known], urgent_folds)
    if vectors is not None and neighbour_weight:
        v, yu = vectors[known], urgent[known]
        logit = np.log(np.clip(u, 1e-12, None)) - np.log(np.clip(1 - u, 1e-12, None))
        for train, test in urgent_folds:
            sims = v[test] @ v[train].T
            near = np.where(yu[train], sims, -1.0).max(axis=1)
            other = np.where(yu[train], -1.0, sims).max(axis=1)
            logit[test] += neighbour_weight * (near - other)
        u = _sigmoid(logit)
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
    grams: Sequence[Grams] | None = None,
    char_weight: float = CHAR_WEIGHT,
    urgent_recall: float = 0.99,
    neighbour_weight: float = NEIGHBOUR_WEIGHT,
    info: dict[str, Any] | None = None,
) -> Model:
    """Train both regressions (scikit-learn, balanced classes, strong L2: a few hundred
    messages against hundreds of features) and record the thresholds chosen for them.
    With ``grams`` (the rows' n-grams) both also read them, scaled by ``char_weight``.
    An ``urgent`` label of None (volunteers' feedback says whether a message is
    drug-related, not whether it was urgent) leaves that row out of the urgent one. The
    urgent threshold keeps ``urgent_recall`` of urgent messages in cross-validation.
    With ``neighbour_weight`` the model keeps the embeddings of the rows whose urgency is
    known, for the urgent score's nearest-neighbour term (see :data:`NEIGHBOUR_WEIGHT`)."""
    from sklearn.linear_model import LogisticRegression

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (rows - mean) / scale
    y = np.array(labels, dtype=bool)
    known = np.array([u is not None for u in urgent], dtype=bool)
    yu = np.array([bool(u) for u in urgent], dtype=bool)
    x, used = _with_grams(z, grams, char_weight)
    xu, _ = _with_grams(_blind(z, feature_names), grams, char_weight)
    drug = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)
    urg = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(xu[known], yu[known])
    vectors = _unit(rows[:, len(feature_names) :])
    threshold, urgent_threshold = choose_thresholds(
        x,
        y,
        yu,
        c=c,
        urgent_recall=urgent_recall,
        urgent_rows=known,
        urgent_z=xu,
        vectors=vectors,
        neighbour_weight=neighbour_weight,
    )
    info = {**(info or {}), "c": c, "threshold": threshold, "urgent_threshold": urgent_threshold}
    near: dict[str, np.ndarray[Any, Any]] = {}
    if neighbour_weight and yu[known].any() and vectors.shape[1]:  # rows with an embedding
        info["neighbour_weight"] = neighbour_weight
        near = {"neighbours": vectors[known], "neighbour_urgent": yu[known]}
    coef = np.asarray(drug.coef_[0], dtype=np.float64)
    urgent_coef = np.asarray(urg.coef_[0], dtype=np.float64)
    dense = z.shape[1]
    char_weights, urgent_char_weights = np.zeros(0), np.zeros(0)
    if grams is not None:
        info["char_weight"] = char_weight
        # The regressions saw the n-grams times char_weight: fold the factor in.
        char_weights, urgent_char_weights = np.zeros(CHAR_FEATURES), np.zeros(CHAR_FEATURES)
        char_weights[used] = coef[dense:] * char_weight
        urgent_char_weights[used] = urgent_coef[dense:] * char_weight
    return Model(
        embedder=embedder,
        feature_names=tuple(feature_names),
        mean=mean,
        scale=scale,
        weights=coef[:dense],
        bias=float(drug.intercept_[0]),
        urgent_weights=urgent_coef[:dense],
        urgent_bias=float(urg.intercept_[0]),
        info=info,
        char_weights=char_weights,
        urgent_char_weights=urgent_char_weights,
        **near,
    )


def _with_grams(
    z: np.ndarray[Any, Any], grams: Sequence[Grams] | None, weight: float
) -> tuple[Any, np.ndarray[Any, Any]]:
    """``z`` with the n-gram block beside it (a sparse matrix), or ``z`` alone, and the
    hash buckets that block holds: only those some row fills (the others would get a
    weight of 0 anyway, and the regression converges much faster without them)."""
    if grams is None:
        return z, np.zeros(0, dtype=np.int64)
    from scipy.sparse import csr_matrix, hstack

    block = grams_matrix(grams)
    used = np.unique(block.indices)
    return hstack([csr_matrix(z), weight * block[:, used]]).tocsr(), used


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
        if not texts:
            return []
        signals = self.features.signals(texts)
        rows = self.features.rows(signals)
        nearest = self.model.nearest(rows)
        p_drug, p_urgent = self.model.scores(rows, [s.grams for s in signals], nearest)
        return [
            self._combine(s, float(p), float(u), near)
            for s, p, u, near in zip(signals, p_drug, p_urgent, nearest, strict=True)
        ]

    def _combine(self, s: Signals, p: float, u: float, near: np.ndarray[Any, Any]) -> Detection:
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
            why = f"reads as urgent ({u:.2f})"
            if self.model.neighbour_weight:
                why += (
                    f"; closest urgent example {near[0]:.2f}, closest other message {near[1]:.2f}"
                )
            reasons.append(Reason("urgent", "model", why, round(u, 3)))
        return replace(
            lexicon,
            flagged=flagged,
            urgent=urgent,
            score=round(max(p, u if urgent else 0.0), 3),
            reasons=tuple(reasons),
        )


@dataclass(frozen=True)
class HeldOut:
    """One held-out group of a cross-validation: the thresholds its model chose on the
    other groups, and its verdicts."""

    group: str
    threshold: float
    urgent_threshold: float
    flagged: np.ndarray[Any, Any]
    urgent: np.ndarray[Any, Any]


def cross_validate_by_group(
    rows: np.ndarray[Any, Any],
    labels: Sequence[bool],
    urgent: Sequence[bool],
    rule_urgent: Sequence[bool],
    groups: Sequence[str],
    *,
    feature_names: Sequence[str],
    grams: Sequence[Grams] | None = None,
    c: float = 0.01,
    neighbour_weight: float = NEIGHBOUR_WEIGHT,
) -> list[HeldOut]:
    """Leave one group (a batch of the dataset) out at a time: train on the others with
    :func:`fit` (thresholds by its inner cross-validation, on those others only), judge
    the group left out as :class:`TrainedDetector` would (urgent by the rule or the
    model, flagged when urgent or likely drug-related). A batch written apart is
    unlike the others, so this says more about new messages than shuffled folds do."""
    out = []
    for name in dict.fromkeys(groups):
        held = [i for i, g in enumerate(groups) if g == name]
        kept = [i for i, g in enumerate(groups) if g != name]
        model = fit(
            rows[kept],
            [labels[i] for i in kept],
            [urgent[i] for i in kept],
            embedder="cv",
            feature_names=feature_names,
            c=c,
            grams=[grams[i] for i in kept] if grams is not None else None,
            neighbour_weight=neighbour_weight,
        )
        p, u = model.scores(rows[held], [grams[i] for i in held] if grams is not None else None)
        threshold = float(model.info["threshold"])
        urgent_threshold = float(model.info["urgent_threshold"])
        rule = np.array([rule_urgent[i] for i in held], dtype=bool)
        marked = np.logical_or(rule, u >= urgent_threshold)
        flagged = np.logical_or(marked, p >= threshold)
        out.append(HeldOut(name, threshold, urgent_threshold, flagged, marked))
    return out

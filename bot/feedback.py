"""Detection that learns from the people using it.

Experts edit the lexicon in the console, and volunteers' handling of cases labels the
messages that were flagged (answered: drug-related; dismissed as not drug-related or
spam: not). :class:`LiveDetector` is the detector a running instance uses, rebuilt when
an edit or a retrained model reaches the store (from any instance); :func:`retrain`
trains on the shipped dataset plus that feedback and measures the result on the
dataset's held-back split against the model in use, so nobody replaces a model blind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot import detection_eval
from bot.classifier import Features, Model, ModelError, fit, make_detector, trained_detector
from bot.detector import MessageDetector
from bot.models import Detection, FeedbackLabel, utcnow
from bot.settings import Settings
from bot.store import Store
from knowledge_base.embedder import Embedder
from knowledge_base.search import Questions

logger = logging.getLogger(__name__)


class LiveDetector:
    """The detector in use; :meth:`refresh` rebuilds it after lexicon edits or a new
    retrained model (cheap to call: it compares two numbers first)."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None,
        *,
        faq: Callable[[], Questions | None] | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.faq = faq
        self.current: MessageDetector = make_detector(settings, embedder, faq=faq)
        self.model_id: int | None = None  # the retrained model in use; None: the file's
        self._version: tuple[tuple[int, int], int | None] | None = None

    def detect(self, text: str) -> Detection:
        return self.current.detect(text)

    async def refresh(self, store: Store) -> bool:
        """Rebuild from the store's lexicon edits and retrained model if they changed.
        Returns whether it did."""
        version = (await store.lexicon_version(), await store.active_detection_model_id())
        if version == self._version:
            return False
        edits = await store.lexicon_edits()
        stored = await store.active_detection_model()
        model = None
        if stored is not None:
            try:
                model = Model.from_bytes(stored[1], source=f"retrained model {stored[0]}")
            except ModelError as exc:
                logger.warning("detection keeps the model file: %s", exc)
                stored = None
        self.current = await asyncio.to_thread(
            make_detector, self.settings, self.embedder, faq=self.faq, edits=edits, model=model
        )
        self.model_id = stored[0] if stored is not None else None
        self._version = version
        logger.info(
            "detection rebuilt: %d lexicon edits, %s",
            len(edits),
            f"retrained model {self.model_id}" if self.model_id else "the model file",
        )
        return True


@dataclass(frozen=True)
class Retrained:
    """A retrained model and how it compares with the one in use on the held-back split."""

    model: Model
    before: dict[str, detection_eval.Scores]
    after: dict[str, detection_eval.Scores]
    feedback: int
    feedback_positive: int

    @property
    def better(self) -> bool:
        """No worse overall (F1 within 0.01) and no urgent message missed that the model
        in use found: the bar for replacing it without --force."""
        b, a = self.before["all"], self.after["all"]
        return a.f1 >= b.f1 - 0.01 and a.urgent_found >= b.urgent_found

    def report(self) -> str:
        lines = [
            f"trained on {self.model.info['train_items']} dataset messages and "
            f"{self.feedback} labelled by volunteers ({self.feedback_positive} drug-related, "
            f"{self.feedback - self.feedback_positive} not)",
            f"held-back split ({self.before['all'].n} messages), the model in use (before) "
            "and the retrained one (after):",
            detection_eval.table({"before": self.before, "after": self.after}),
        ]
        return "\n".join(lines)


def retrain(
    settings: Settings,
    features: Features,
    current: MessageDetector,
    train_items: Sequence[detection_eval.Item],
    test_items: Sequence[detection_eval.Item],
    feedback: Sequence[FeedbackLabel],
    *,
    c: float = 0.01,
    info: dict[str, Any] | None = None,
) -> Retrained:
    """Train on the dataset's train split plus ``feedback`` and judge both the model in
    use (``current``) and the new one on ``test_items``. Feedback says whether a message
    is drug-related, not whether it was urgent: the urgent model learns from the dataset."""
    held_back = {i.text.casefold() for i in test_items}
    # A volunteer-labelled message identical to a held-back one would leak into the test.
    usable = [f for f in feedback if f.text.casefold() not in held_back]
    texts = [i.text for i in train_items] + [f.text for f in usable]
    signals = features.signals(texts)
    rows = features.rows(signals)
    labels = [i.drug_related for i in train_items] + [f.drug_related for f in usable]
    urgent: list[bool | None] = [i.urgent for i in train_items] + [None] * len(usable)
    model = fit(
        rows,
        labels,
        urgent,
        embedder=features.embedder.name,
        feature_names=features.names,
        c=c,
        grams=[s.grams for s in signals],
        info={
            **(info or {}),
            "train_items": len(train_items),
            "feedback_items": len(usable),
            "trained_at": utcnow().isoformat(timespec="seconds"),
        },
    )
    after = trained_detector(settings, features, model)
    return Retrained(
        model=model,
        before=detection_eval.evaluate(test_items, _verdicts(current)),
        after=detection_eval.evaluate(test_items, _verdicts(after)),
        feedback=len(usable),
        feedback_positive=sum(1 for f in usable if f.drug_related),
    )


def _verdicts(detector: MessageDetector) -> Callable[[str], detection_eval.Verdict]:
    def judge(text: str) -> detection_eval.Verdict:
        d = detector.detect(text)
        return detection_eval.Verdict(flagged=d.flagged, urgent=d.urgent)

    return judge

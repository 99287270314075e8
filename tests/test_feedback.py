"""Detection feedback: dismissal reasons as labels, experts' lexicon edits, the live
detector that picks them up, and retraining on the dataset plus feedback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot import detection_eval
from bot.classifier import Features, Model, Prototypes, TrainedDetector, fit, lexicon_detector
from bot.feedback import LiveDetector, Retrained, retrain
from bot.models import CaseStatus, DismissReason, FeedbackLabel, Role, Visibility
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store import Conflict, NotFound, Store
from knowledge_base.search import Questions
from tests.conftest import add_user, flagged_case, make_settings
from tests.fakes import FakeEmbedder, message, opt_in

# -- dismissal and labels -----------------------------------------------------------------


async def test_answered_and_dismissed_cases_become_labels(runtime: Runtime) -> None:
    rt = runtime
    volunteer = await add_user(rt, "vera")
    answered = await flagged_case(rt, "is xtc met alcohol gevaarlijk?")
    await rt.store.approve_reply(
        answered,
        text="Liever niet samen.",
        visibility=Visibility.PUBLIC,
        written_by=volunteer.id,
        approved_by=volunteer.id,
    )
    soda = await flagged_case(
        rt, "docu gezien over coke smokkel in de haven, hoeveel kost dat wel niet"
    )
    await rt.store.dismiss_case(soda, volunteer.id, DismissReason.NOT_DRUG_RELATED)
    other = await flagged_case(rt, "mijn huisarts schreef xanax voor, mag ik autorijden?")
    await rt.store.dismiss_case(other, volunteer.id, DismissReason.NOT_OUR_JOB)

    labels = {label.text: label for label in await rt.store.feedback_labels()}
    assert labels["is xtc met alcohol gevaarlijk?"].drug_related is True
    assert labels["is xtc met alcohol gevaarlijk?"].source == "answered"
    assert (
        labels["docu gezien over coke smokkel in de haven, hoeveel kost dat wel niet"].drug_related
        is False
    )
    assert labels[
        "docu gezien over coke smokkel in de haven, hoeveel kost dat wel niet"
    ].source == ("dismissed:not_drug_related")
    # "Not our job" says nothing about whether it was drug-related.
    assert "mijn huisarts schreef xanax voor, mag ik autorijden?" not in labels
    (case,) = [c for c in await rt.store.list_cases(statuses=list(CaseStatus)) if c.id == soda]
    assert case.dismiss_reason is DismissReason.NOT_DRUG_RELATED
    audit = [e for e in await rt.store.audit_events("case") if e["action"] == "case.dismiss"]
    assert {e["details"]["reason"] for e in audit} == {"not_drug_related", "not_our_job"}


async def test_a_case_held_by_someone_else_or_closed_cannot_be_dismissed(runtime: Runtime) -> None:
    rt = runtime
    anna = await add_user(rt, "anna")
    bert = await add_user(rt, "bert")
    case_id = await flagged_case(rt)
    await rt.store.claim_case(
        case_id, anna.id, lapsed_before=rt.claim_lapsed_before(), max_claims=5
    )
    with pytest.raises(Conflict, match="claimed by anna"):
        await rt.store.dismiss_case(
            case_id, bert.id, DismissReason.SPAM, claim_lapsed_before=rt.claim_lapsed_before()
        )
    await rt.store.dismiss_case(case_id, anna.id, DismissReason.SPAM)
    with pytest.raises(Conflict, match="dismissed"):
        await rt.store.dismiss_case(case_id, anna.id, DismissReason.SPAM)
    with pytest.raises(NotFound):
        await rt.store.dismiss_case(99999, anna.id, DismissReason.SPAM)


# -- lexicon edits and the live detector ----------------------------------------------------


async def _expert(store: Store) -> int:
    return (await store.add_user("erik", "x", Role.EXPERT)).id


async def test_lexicon_edits_reach_the_live_detector_and_can_be_removed(
    settings: Settings, store: Store
) -> None:
    expert = await _expert(store)
    live = LiveDetector(settings, None)
    assert await live.refresh(store) is True
    assert await live.refresh(store) is False  # nothing changed: nothing rebuilt
    text = "wie heeft er nog snoeperkes voor zaterdag, hoeveel neem je?"
    assert not live.detect(text).flagged

    term = await store.add_lexicon_edit(
        kind="term",
        term="snoeperkes",
        substance="mdma",
        strong=True,
        language="nl",
        author=expert,
        note="Flemish slang for XTC pills at festivals",
        source="own fieldwork",
        licence="CC0",
    )
    assert await live.refresh(store) is True
    flagged = live.detect(text)
    assert flagged.flagged and "mdma" in flagged.substances

    # A false friend: the same word next to "halloween" is sweets.
    await store.add_lexicon_edit(
        kind="false_friend", term="snoeperkes", context=("halloween",), author=expert
    )
    await live.refresh(store)
    assert not live.detect("snoeperkes voor halloween, hoeveel neem je mee?").flagged
    assert live.detect(text).flagged

    # An urgency phrase the shipped lexicon lacks.
    await store.add_lexicon_edit(kind="urgent", term="ligt te schokken", author=expert)
    await live.refresh(store)
    assert live.detect("hij ligt te schokken op de grond").urgent

    await store.remove_lexicon_edit(term, expert)
    await live.refresh(store)
    assert not live.detect(text).flagged
    with pytest.raises(NotFound):
        await store.remove_lexicon_edit(term, expert)
    (removed,) = [e for e in await store.lexicon_edits(include_removed=True) if e.id == term]
    assert removed.removed_by == "erik" and removed.source == "own fieldwork"
    assert removed.licence == "CC0" and removed.author == "erik"


async def test_an_edit_that_no_longer_fits_is_skipped_not_fatal(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    expert = await _expert(store)
    await store.add_lexicon_edit(kind="term", term="zzz", substance="gone", author=expert)
    await store.add_lexicon_edit(kind="term", term="ploink", substance="ketamine", author=expert)
    live = LiveDetector(settings, None)
    await live.refresh(store)
    assert "unknown substance 'gone'" in caplog.text
    assert any(r.term == "ploink" for r in live.detect("hoeveel ploink").reasons)


# -- retraining ---------------------------------------------------------------------------

PROTOTYPES = Prototypes(
    sentences={"dosing": ("hoeveel xtc", "xtc mix"), "trouble": ("slaap niet water",)},
    labels={"dosing": "asks about a dose", "trouble": "someone is in trouble"},
)
FAQ = Questions(
    matrix=FakeEmbedder().embed(["xtc alcohol mix"]),
    variants=(("combo", "nl", "xtc alcohol mix"),),
)


def _item(i: int, text: str, drug: bool, urgent: bool, split: str) -> detection_eval.Item:
    return detection_eval.Item(f"nl-{i:04d}", text, "nl", drug, urgent, split)


DRUG = ["hoeveel xtc mag ik", "xtc en alcohol mix", "coke op festival", "xtc mix veilig?"]
CALM = ["wie gaat mee naar zee", "lekker weer vandaag", "de trein is laat", "pizza?"]
URGENT = ["hij slaap en ademt raar na xtc", "water water hij slaap niet wakker"]


def _items(split: str, copies: int) -> list[detection_eval.Item]:
    rows = [(t, True, False) for t in DRUG] + [(t, False, False) for t in CALM]
    rows += [(t, True, True) for t in URGENT]
    return [
        _item(n, f"{text} {k}" if split == "test" else text, drug, urgent, split)
        for k in range(copies)
        for n, (text, drug, urgent) in enumerate(rows)
    ]


def _features(settings: Settings) -> Features:
    return Features(lexicon_detector(settings), FakeEmbedder(), PROTOTYPES, faq=lambda: FAQ)


def _current(settings: Settings, features: Features) -> TrainedDetector:
    train = _items("train", 5)
    model = fit(
        features.rows(features.signals([i.text for i in train])),
        [i.drug_related for i in train],
        [i.urgent for i in train],
        embedder="fake",
        feature_names=features.names,
        c=1.0,
    )
    return TrainedDetector(features, model, threshold=0.5, urgent_threshold=0.5)


def test_retraining_adds_feedback_and_compares_on_the_held_back_split(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///x.db")
    features = _features(settings)
    current = _current(settings, features)
    test = _items("test", 2)
    feedback = [
        FeedbackLabel(1, "coke zero op festival", "nl", False, "dismissed:not_drug_related"),
        FeedbackLabel(2, "alcohol en xtc samen?", "nl", True, "answered"),
        # The same text as a held-back message: left out, or the test would be leaked.
        FeedbackLabel(3, test[0].text.upper(), "nl", True, "answered"),
    ]
    result = retrain(settings, features, current, _items("train", 5), test, feedback, c=1.0)
    assert result.feedback == 2 and result.feedback_positive == 1
    assert result.model.info["feedback_items"] == 2 and result.model.info["train_items"] == 50
    # The model file keeps the embeddings of dataset messages only (its urgent score's
    # neighbours), never of the people's messages volunteers labelled.
    assert result.model.neighbours.shape[0] == 50
    assert result.before["all"].n == result.after["all"].n == len(test)
    assert result.better  # the same data, nearly: no worse
    report = result.report()
    assert "2 labelled by volunteers (1 drug-related, 1 not)" in report
    assert "before" in report and "after" in report


def test_feedback_rows_do_not_teach_urgency() -> None:
    rows = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]] * 10)
    labels = [True, False, True, False] * 10
    # Only dataset rows (the first 20) say whether a message is urgent.
    urgent: list[bool | None] = [True, False, False, False] * 5 + [None] * 20
    model = fit(rows, labels, urgent, embedder="fake", feature_names=("a", "b"), c=1.0)
    assert 0.05 <= model.info["urgent_threshold"] <= 0.95


async def test_a_stored_retrained_model_is_used_by_every_instance_and_can_be_rolled_back(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///unused.db")
    features = _features(settings)
    current = _current(settings, features)
    retrained = replace(current.model, info={**current.model.info, "n": 1})
    assert await store.active_detection_model_id() is None
    model_id = await store.save_detection_model(retrained.to_bytes(), {"n": 1})
    stored = await store.active_detection_model()
    assert stored is not None and stored[0] == model_id
    assert Model.from_bytes(stored[1]).info["n"] == 1
    assert await store.roll_back_detection_model() is None
    assert await store.active_detection_model_id() is None
    with pytest.raises(NotFound, match="shipped one"):
        await store.roll_back_detection_model()


async def test_a_broken_stored_model_leaves_the_model_file_in_use(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await store.save_detection_model(b"not a model", {})
    live = LiveDetector(settings, None)
    await live.refresh(store)
    assert live.model_id is None
    assert "not a usable detection model" in caplog.text
    assert live.detect("hoeveel xtc").flagged  # still detecting


async def test_the_pipeline_detects_with_edits_made_through_another_instance(
    runtime: Runtime,
) -> None:
    rt = runtime
    expert = await add_user(rt, "erika", Role.EXPERT)
    await rt.store.add_lexicon_edit(
        kind="term", term="blauwkes", substance="mdma", strong=True, author=expert.id
    )
    await rt.maintain()  # what every instance runs each minute
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message("hoeveel blauwkes neem jij?", message_id="b1"))
    assert result is not None and result.case_id is not None


def _scores(f1_hits: int, urgent_found: int) -> detection_eval.Scores:
    # 10 positives, f1_hits of them found, no false alarms; 4 urgent.
    return detection_eval.Scores(
        n=20,
        positives=10,
        true_pos=f1_hits,
        false_pos=0,
        false_neg=10 - f1_hits,
        urgent=4,
        urgent_found=urgent_found,
        urgent_flagged=urgent_found,
        false_urgent=0,
    )


@pytest.mark.parametrize(
    ("before", "after", "better"),
    [
        ((9, 4), (9, 4), True),  # the same
        ((9, 4), (10, 4), True),  # better
        ((9, 4), (8, 4), False),  # F1 0.947 -> 0.889: worse by more than 0.01
        ((9, 4), (10, 3), False),  # better overall, but an urgent message is missed
    ],
)
def test_a_retrained_model_replaces_the_one_in_use_only_if_no_worse(
    before: tuple[int, int], after: tuple[int, int], better: bool
) -> None:
    model = fit(
        np.array([[0.0], [1.0]] * 10),
        [False, True] * 10,
        [False, True] * 10,
        embedder="fake",
        feature_names=("a",),
        c=1.0,
        info={"train_items": 20},
    )
    result = Retrained(
        model=model,
        before={"all": _scores(*before)},
        after={"all": _scores(*after)},
        feedback=0,
        feedback_positive=0,
    )
    assert result.better is better

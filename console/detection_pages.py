"""Detection in the console: dismissing a case with a reason (feedback for retraining),
the playground where anyone on the team sees how a message is judged and why, and the
lexicon editor where experts add terms, urgency phrases and false friends."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.classifier import TrainedDetector
from bot.detector import Lexicon, LexiconError
from bot.events import CaseEvent, CaseEventKind
from bot.models import (
    LEXICON_EDIT_KINDS,
    Detection,
    DismissReason,
    LexiconEdit,
    Role,
    User,
    utcnow,
)
from bot.runtime import Runtime
from bot.store import Conflict
from console import claims
from console.auth import require, runtime
from console.i18n import N_
from console.i18n import gettext as _
from console.pages import render, templates

router = APIRouter(include_in_schema=False)

PageUser = Annotated[User, Depends(require(page=True))]
Expert = Annotated[User, Depends(require(Role.EXPERT, Role.COORDINATOR, page=True))]

DISMISS_CHOICES: dict[DismissReason, str] = {
    DismissReason.NOT_DRUG_RELATED: N_("Not drug-related (the detector was wrong)"),
    DismissReason.NOT_OUR_JOB: N_("Drug-related, but not for us to answer"),
    DismissReason.SPAM: N_("Spam or a bot"),
    DismissReason.ALREADY_ANSWERED: N_("Already answered (by someone in the chat, or elsewhere)"),
}
# The case page offers these when dismissing.
templates.env.globals["dismiss_choices"] = DISMISS_CHOICES
# The longest message the playground judges: the pipeline cuts texts at this length too.
MAX_PLAYGROUND_CHARS = 8000


class DismissRefused(claims.ClaimRefused):
    """The case cannot be dismissed as asked; the message says why."""


async def dismiss(rt: Runtime, case_id: int, user: User, reason: DismissReason) -> None:
    """Dismiss a case for the pages and the API alike."""
    if not user.may_claim:
        raise claims.NotAllowed("only trained volunteers may dismiss cases; ask a coordinator")
    try:
        await rt.store.dismiss_case(
            case_id, user.id, reason, claim_lapsed_before=rt.claim_lapsed_before()
        )
    except Conflict as exc:
        raise DismissRefused(str(exc)) from None
    rt.events.publish(CaseEvent(CaseEventKind.CLOSED, case_id))


@router.post("/cases/{case_id}/dismiss")
async def dismiss_case(
    request: Request,
    case_id: int,
    user: PageUser,
    reason: Annotated[str, Form(max_length=30)],
) -> Response:
    try:
        chosen = DismissReason(reason)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown reason") from None
    try:
        await dismiss(runtime(request), case_id, user, chosen)
    except claims.ClaimRefused as exc:
        request.session["flash"] = {"kind": "error", "text": _("Not dismissed: %(why)s.", why=exc)}
        return RedirectResponse(f"/cases/{case_id}", status_code=status.HTTP_303_SEE_OTHER)
    request.session["flash"] = {
        "kind": "ok",
        "text": _(
            "Case #%(id)s dismissed: %(reason)s.",
            id=case_id,
            reason=_(DISMISS_CHOICES[chosen]).lower(),
        ),
    }
    return RedirectResponse("/queue", status_code=status.HTTP_303_SEE_OTHER)


# -- playground -----------------------------------------------------------------------------


def explain(detection: Detection) -> dict[str, Any]:
    """The detection grouped the way the playground shows it."""
    by_kind: dict[str, list[Any]] = {}
    for reason in detection.reasons:
        by_kind.setdefault(reason.kind, []).append(reason)
    return {
        "terms": by_kind.get("substance", []) + by_kind.get("intent", []),
        "set_aside": by_kind.get("context", []),
        "urgent": by_kind.get("urgent", []),
        "similar": by_kind.get("similar", []) + by_kind.get("faq", []),
        "model": by_kind.get("model", []),
    }


def _detector_kind(rt: Runtime) -> str:
    current = rt.detector.current
    if isinstance(current, TrainedDetector):
        which = f"retrained model {rt.detector.model_id}" if rt.detector.model_id else "model file"
        return (
            f"trained ({which}; flags from {current.threshold:.2f}, "
            f"urgent from {current.urgent_threshold:.2f})"
        )
    return "lexicon only"


async def _playground(
    request: Request, user: User, text: str = "", *, code: int = 200
) -> HTMLResponse:
    rt = runtime(request)
    detection = None
    if text.strip():
        detection = await _detect(rt, text)
    return render(
        request,
        "playground.html",
        {
            "user": user,
            "text": text,
            "detection": detection,
            "explained": explain(detection) if detection else None,
            "detector": _detector_kind(rt),
            "max_chars": MAX_PLAYGROUND_CHARS,
        },
        code=code,
    )


async def _detect(rt: Runtime, text: str) -> Detection:
    # The trained detector embeds the text: CPU work, kept off the event loop.
    return await asyncio.to_thread(rt.detector.detect, text)


@router.get("/detection")
async def playground(request: Request, user: PageUser) -> HTMLResponse:
    return await _playground(request, user)


@router.post("/detection")
async def playground_try(
    request: Request,
    user: PageUser,
    text: Annotated[str, Form(max_length=MAX_PLAYGROUND_CHARS)] = "",
) -> HTMLResponse:
    # POST, not a query string: pasted chat text stays out of URLs and access logs.
    return await _playground(request, user, text)


# -- lexicon editor ---------------------------------------------------------------------------


def _lexicon_context(rt: Runtime, user: User, edits: list[LexiconEdit]) -> dict[str, Any]:
    shipped = Lexicon.load()
    return {
        "user": user,
        "edits": [e for e in edits if e.removed_at is None],
        "removed": [e for e in edits if e.removed_at is not None],
        "substances": sorted(shipped.labels.items(), key=lambda kv: kv[1].casefold()),
        "shipped": {
            "terms": len(shipped.terms),
            "urgent": len(shipped.urgent),
            "false_friends": len(shipped.false_friends),
        },
        "kinds": LEXICON_EDIT_KINDS,
        "form": {},
        "error": None,
    }


@router.get("/lexicon")
async def lexicon_page(request: Request, user: Expert) -> HTMLResponse:
    rt = runtime(request)
    edits = await rt.store.lexicon_edits(include_removed=True)
    return render(request, "lexicon.html", _lexicon_context(rt, user, edits))


def _check_edit(shipped: Lexicon, edit: LexiconEdit) -> None:
    """Refuse what detection could not use, with a reason an expert can act on."""
    if not edit.term.strip():
        raise LexiconError("write the term or phrase")
    if edit.kind == "term" and edit.substance not in shipped.labels:
        raise LexiconError("choose the substance the term stands for")
    if edit.kind == "false_friend" and not edit.context:
        raise LexiconError("a false friend needs the words that give it away, comma separated")
    if not edit.source.strip():
        raise LexiconError(
            "say where it comes from (your own knowledge, a message you saw, a public list)"
        )
    shipped.with_edits([edit])  # raises on a term with no words


@router.post("/lexicon")
async def lexicon_add(request: Request, user: Expert) -> Response:
    rt = runtime(request)
    form = await request.form()

    def field(name: str, limit: int = 300) -> str:
        value = form.get(name, "")
        return value.strip()[:limit] if isinstance(value, str) else ""

    kind = field("kind", 20)
    if kind not in LEXICON_EDIT_KINDS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown kind")
    context = tuple(c.strip() for c in field("context", 1000).split(",") if c.strip())
    language = field("language", 5) or None
    edit = LexiconEdit(
        id=0,
        kind=kind,
        term=field("term", 200),
        substance=(field("substance", 50) or None) if kind == "term" else None,
        strong=field("strength", 10) == "strong" if kind == "term" else False,
        context=context if kind == "false_friend" else (),
        language=language if language in ("nl", "fr", "en") else None,
        note=field("note", 1000),
        source=field("source", 300),
        licence=field("licence", 100),
        author=user.username,
        created_at=utcnow(),
    )
    try:
        _check_edit(Lexicon.load(), edit)
    except LexiconError as exc:
        edits = await rt.store.lexicon_edits(include_removed=True)
        context_ = _lexicon_context(rt, user, edits)
        context_.update(form={k: v for k, v in form.items() if isinstance(v, str)}, error=str(exc))
        return render(request, "lexicon.html", context_, code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    await rt.store.add_lexicon_edit(
        kind=edit.kind,
        term=edit.term,
        substance=edit.substance,
        strong=edit.strong,
        context=edit.context,
        language=edit.language,
        note=edit.note,
        source=edit.source,
        licence=edit.licence,
        author=user.id,
    )
    await rt.detector.refresh(rt.store)
    request.session["flash"] = {
        "kind": "ok",
        "text": _(
            "Added '%(term)s'. Detection uses it from now on (other instances within a "
            "minute); try it in the playground.",
            term=edit.term,
        ),
    }
    return RedirectResponse("/lexicon", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/lexicon/{edit_id}/remove")
async def lexicon_remove(request: Request, edit_id: int, user: Expert) -> Response:
    rt = runtime(request)
    await rt.store.remove_lexicon_edit(edit_id, user.id)
    await rt.detector.refresh(rt.store)
    request.session["flash"] = {"kind": "ok", "text": _("Removed; detection no longer uses it.")}
    return RedirectResponse("/lexicon", status_code=status.HTTP_303_SEE_OTHER)

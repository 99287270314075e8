"""The team's discussion of a case: internal notes, questions escalated to the experts,
the experts' inbox and answers, and turning a good answer into an FAQ draft."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.events import CaseEvent, CaseEventKind
from bot.models import NoteKind, Role, User
from bot.store import Conflict, NotFound
from console.auth import require, runtime
from console.i18n import gettext as _
from console.pages import render
from knowledge_base import Entry

router = APIRouter(include_in_schema=False)

PageUser = Annotated[User, Depends(require(page=True))]
Expert = Annotated[User, Depends(require(Role.EXPERT, Role.COORDINATOR, page=True))]
MAX_NOTE_CHARS = 4000


def _back(case_id: int) -> RedirectResponse:
    return RedirectResponse(f"/cases/{case_id}#notes", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/notes")
async def add_note(
    request: Request,
    case_id: int,
    user: PageUser,
    text: Annotated[str, Form(max_length=MAX_NOTE_CHARS)] = "",
    kind: Annotated[str, Form()] = "note",
) -> Response:
    """An internal note (``kind=note``) or a question for the experts (``question``)."""
    if kind not in (NoteKind.NOTE.value, NoteKind.QUESTION.value):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown kind of note")
    if not text.strip():
        request.session["flash"] = {"kind": "error", "text": _("Write something first.")}
        return _back(case_id)
    rt = runtime(request)
    await rt.store.add_note(case_id, user.id, NoteKind(kind), text.strip())
    rt.events.publish(CaseEvent(CaseEventKind.UPDATED, case_id))
    request.session["flash"] = {
        "kind": "ok",
        "text": _("Asked the experts; their answer will appear here.")
        if kind == NoteKind.QUESTION.value
        else _("Note added (the team sees it; the person never does)."),
    }
    return _back(case_id)


@router.get("/questions")
async def inbox(request: Request, user: Expert) -> HTMLResponse:
    """The experts' inbox: questions escalated by volunteers, oldest first."""
    rt = runtime(request)
    open_questions = await rt.store.questions()
    cases = {
        q.case_id: (await rt.store.get_case(q.case_id, context_messages=0)).case
        for q in open_questions
    }
    return render(
        request, "questions.html", {"user": user, "questions": open_questions, "cases": cases}
    )


@router.post("/questions/{question_id}/answer")
async def answer(
    request: Request,
    question_id: int,
    user: Expert,
    text: Annotated[str, Form(max_length=MAX_NOTE_CHARS)] = "",
) -> Response:
    rt = runtime(request)
    question = await rt.store.note(question_id)
    if not text.strip():
        request.session["flash"] = {"kind": "error", "text": _("Write the answer first.")}
        return _back(question.case_id)
    try:
        await rt.store.answer_question(question_id, user.id, text.strip())
    except Conflict as exc:
        request.session["flash"] = {"kind": "error", "text": _("Not saved: %(why)s.", why=exc)}
        return _back(question.case_id)
    # The volunteer's open case page and queue refresh with the answer, and the one who
    # asked is told (console/static/live.js), wherever they are in the console.
    rt.events.publish(CaseEvent(CaseEventKind.UPDATED, question.case_id))
    asker = await rt.store.user_credentials(question.author)
    if asker is not None:
        rt.events.publish(
            CaseEvent(CaseEventKind.EXPERT_ANSWER, question.case_id, user=asker[0].id)
        )
    request.session["flash"] = {"kind": "ok", "text": _("Answer saved; the volunteer sees it.")}
    return _back(question.case_id)


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.casefold())[:6]
    return "-".join(words) or "question"


@router.post("/questions/{question_id}/faq-draft")
async def faq_draft(request: Request, question_id: int, user: Expert) -> Response:
    """Turn an answered question into an FAQ entry draft, to edit and review."""
    rt = runtime(request)
    question = await rt.store.note(question_id)
    answers = [
        n
        for n in await rt.store.case_notes(question.case_id)
        if n.kind is NoteKind.ANSWER and n.question_id == question_id
    ]
    if question.kind is not NoteKind.QUESTION or not answers:
        raise HTTPException(status.HTTP_409_CONFLICT, "only an answered question makes a draft")
    case = (await rt.store.get_case(question.case_id, context_messages=0)).case
    language = case.language or rt.settings.general.default_language
    entry_id = f"draft-{question_id}-{_slug(question.text)}"
    try:
        await rt.store.faq_entry(entry_id)
    except NotFound:
        entry = Entry(
            id=entry_id,
            topic=question.text[:80],
            status="draft",
            questions={language: (question.text,)},
            answers={language: answers[0].text},
        )
        await rt.store.save_faq_entry(entry, author=user.username)
        await rt.faq.refresh()
    request.session["flash"] = {
        "kind": "ok",
        "text": _(
            "FAQ draft made from the question and its answer: phrase the question the way "
            "people ask it, add the other languages and sources, then send it to review."
        ),
    }
    return RedirectResponse(f"/faq/{entry_id}/edit", status_code=status.HTTP_303_SEE_OTHER)

"""FAQ pages: the list with the experts' to-do, an entry with its history, the editor,
status changes (draft → in review → published → expired) and diffs between revisions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.models import Role, User, utcnow
from bot.splitting import split_text
from bot.store import Conflict
from console import dates, i18n
from console.auth import require, runtime
from console.i18n import N_
from console.i18n import gettext as _
from console.pages import render
from knowledge_base import Entry, EntryError, Source, to_markdown
from knowledge_base.entry import LANGUAGES, STATUSES

router = APIRouter(include_in_schema=False)

Reader = Annotated[User, Depends(require(page=True))]
Editor = Annotated[User, Depends(require(Role.EXPERT, Role.COORDINATOR, page=True))]

# Which status an expert may move an entry to from each status.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("in_review",),
    "in_review": ("published", "draft"),
    "published": ("in_review", "expired"),
    "expired": ("in_review",),
}
DUE_SOON = dt.timedelta(days=30)


def _todo(entry: Entry, today: dt.date) -> str | None:
    """Why an entry needs an expert, if it does."""
    if entry.status == "in_review":
        return N_("waiting for review")
    if entry.status == "expired":
        return N_("expired: review and publish again")
    if entry.status == "published" and entry.review_by and entry.review_by <= today + DUE_SOON:
        return _(
            "review due by %(date)s",
            date=dates.day(entry.review_by, zone=dates.DEFAULT_ZONE, language=i18n.current()),
        )
    if entry.status == "draft":
        return "draft"
    return None


@router.get("/faq")
async def faq_list(request: Request, user: Reader) -> HTMLResponse:
    rt = runtime(request)
    entries = await rt.store.faq_entries()
    today = utcnow().date()
    rows = [(e, _todo(e, today)) for e in entries]
    todo = [(e, why) for e, why in rows if why and why != "draft"]
    return render(
        request,
        "faq_list.html",
        {"user": user, "rows": rows, "todo": todo, "suggested": rt.faq.suggest_statuses},
    )


@router.get("/faq/{entry_id}")
async def faq_entry(request: Request, entry_id: str, user: Reader) -> HTMLResponse:
    rt = runtime(request)
    entry, revision = await rt.store.faq_entry(entry_id)
    history = await rt.store.faq_history(entry_id)
    return render(
        request,
        "faq_entry.html",
        {
            "user": user,
            "entry": entry,
            "revision": revision,
            "history": history,
            "can_edit": user.role in (Role.EXPERT, Role.COORDINATOR),
            "next_statuses": TRANSITIONS.get(entry.status, ()),
            "languages": LANGUAGES,
        },
    )


@router.get("/faq/{entry_id}/edit")
async def faq_edit_form(request: Request, entry_id: str, user: Editor) -> HTMLResponse:
    entry, revision = await runtime(request).store.faq_entry(entry_id)
    return render(
        request,
        "faq_edit.html",
        {"user": user, "entry": entry, "revision": revision, "languages": LANGUAGES, "error": None},
    )


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def _sources(text: str) -> tuple[Source, ...]:
    sources = []
    for number, line in enumerate(_lines(text), start=1):
        name, sep, url = line.rpartition("|")
        if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
            raise EntryError(f"sources, line {number}: write 'name | https://address'")
        sources.append(Source(name.strip(), url.strip()))
    return tuple(sources)


@router.post("/faq/{entry_id}/edit")
async def faq_save(request: Request, entry_id: str, user: Editor) -> Response:
    rt = runtime(request)
    current, revision = await rt.store.faq_entry(entry_id)
    form = await request.form()

    def field(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    stale = (
        "someone saved this entry while you were editing; your text is below, "
        "compare it with the latest revision before saving again"
    )
    if field("action") == "preview":
        return _preview(request, user, current, form)
    try:
        if field("revision") != str(revision):
            raise EntryError(stale)
        questions = {lang: _lines(field(f"questions_{lang}")) for lang in LANGUAGES}
        answers = {lang: field(f"answer_{lang}").strip() for lang in LANGUAGES}
        for lang in LANGUAGES:
            if answers[lang] and not questions[lang]:
                raise EntryError(f"the {lang} answer needs at least one question")
        if not any(answers.values()):
            raise EntryError("write the answer in at least one language")
        for lang, answer in answers.items():
            if any(line.startswith("## ") for line in answer.splitlines()):
                raise EntryError(
                    f"the {lang} answer has a line starting with '## ', which the FAQ files "
                    "use to start a language; use '### ' or bold text instead"
                )
        review_by = dt.date.fromisoformat(field("review_by")) if field("review_by") else None
        edited = dataclasses.replace(
            current,
            questions={k: v for k, v in questions.items() if v},
            answers={k: v for k, v in answers.items() if v},
            sources=_sources(field("sources")),
            substances=_words(field("substances")),
            tags=_words(field("tags")),
            review_by=review_by,
        )
        if edited != current and current.status == "published":
            # Changed text has not been reviewed: it leaves the suggestions until it is.
            edited = dataclasses.replace(edited, status="in_review", reviewed_by=None)
        new_revision = await rt.store.save_faq_entry(
            edited, author=user.username, expected_revision=revision
        )
    except Conflict:
        return await _edit_again(request, user, entry_id, form, stale)
    except (EntryError, ValueError) as exc:
        return await _edit_again(request, user, entry_id, form, str(exc))
    await rt.faq.refresh()
    if new_revision == revision:
        message = _("No change.")
    elif edited.status != current.status:
        message = _(
            "Saved as revision %(n)s; back in review until an expert publishes it.",
            n=new_revision,
        )
    else:
        message = _("Saved as revision %(n)s.", n=new_revision)
    request.session["flash"] = {"kind": "ok", "text": message}
    return RedirectResponse(f"/faq/{entry_id}", status_code=status.HTTP_303_SEE_OTHER)


# What a reply made from an answer looks like on each platform: one message, or the parts
# the outbox will cut it into (bot/splitting.py), at the platforms' own limits.
PREVIEW_LIMITS = {"Telegram": 4096, "Discord": 2000}


def _preview(request: Request, user: User, entry: Any, form: Any) -> HTMLResponse:
    """The editor again with what was typed, unsaved, and each answer as people would
    receive it: plain text (no markup is rendered), cut into parts where it is long."""
    draft = {name: form.get(name, "") for name in form if isinstance(name, str)}
    preview = {}
    for lang in LANGUAGES:
        answer = str(draft.get(f"answer_{lang}", "")).strip()
        if answer:
            preview[lang] = {
                name: split_text(answer, limit) for name, limit in PREVIEW_LIMITS.items()
            }
    return render(
        request,
        "faq_edit.html",
        {
            "user": user,
            "entry": entry,
            "revision": draft.get("revision", ""),
            "languages": LANGUAGES,
            "error": None,
            "draft": draft,
            "preview": preview,
        },
    )


async def _edit_again(
    request: Request, user: User, entry_id: str, form: Any, error: str
) -> HTMLResponse:
    """The editor again, with what was typed and why it was not saved."""
    current, revision = await runtime(request).store.faq_entry(entry_id)
    draft = {name: form.get(name, "") for name in form if isinstance(name, str)}
    draft.pop("revision", None)  # the form must be compared with the newest revision
    return render(
        request,
        "faq_edit.html",
        {
            "user": user,
            "entry": current,
            "revision": revision,
            "languages": LANGUAGES,
            "error": error,
            "draft": draft,
        },
        code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post("/faq/{entry_id}/status")
async def faq_status(
    request: Request,
    entry_id: str,
    user: Editor,
    new_status: Annotated[str, Form(alias="status")],
    seen_revision: Annotated[int, Form(alias="revision")],
) -> Response:
    rt = runtime(request)
    entry, revision = await rt.store.faq_entry(entry_id)
    if seen_revision != revision:
        request.session["flash"] = {
            "kind": "error",
            "text": _(
                "The entry changed since you opened it (now revision %(n)s): read it again "
                "before changing its status.",
                n=revision,
            ),
        }
        return RedirectResponse(f"/faq/{entry_id}", status_code=status.HTTP_303_SEE_OTHER)
    if new_status not in STATUSES or new_status not in TRANSITIONS.get(entry.status, ()):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"an entry cannot go from {entry.status} to {new_status}"
        )
    changed = dataclasses.replace(entry, status=new_status)
    if new_status == "published":
        today = utcnow().date()
        if entry.review_by is None or entry.review_by <= today:
            request.session["flash"] = {
                "kind": "error",
                "text": _("Set a review-by date in the future before publishing."),
            }
            return RedirectResponse(f"/faq/{entry_id}", status_code=status.HTTP_303_SEE_OTHER)
        changed = dataclasses.replace(changed, reviewed_by=user.username)
    try:
        await rt.store.save_faq_entry(changed, author=user.username, expected_revision=revision)
    except Conflict:
        request.session["flash"] = {
            "kind": "error",
            "text": _("The entry changed meanwhile: read it again before changing its status."),
        }
        return RedirectResponse(f"/faq/{entry_id}", status_code=status.HTTP_303_SEE_OTHER)
    await rt.faq.refresh()
    label = _(new_status.replace("_", " "))
    request.session["flash"] = {
        "kind": "ok",
        "text": _("Status changed to %(status)s.", status=label),
    }
    return RedirectResponse(f"/faq/{entry_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/faq/{entry_id}/diff")
async def faq_diff(
    request: Request, entry_id: str, user: Reader, old: int, new: int
) -> HTMLResponse:
    history = {r.revision: r for r in await runtime(request).store.faq_history(entry_id)}
    if old not in history or new not in history:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such revision")
    before = to_markdown(history[old].entry).splitlines()
    after = to_markdown(history[new].entry).splitlines()
    lines = list(
        difflib.unified_diff(before, after, f"revision {old}", f"revision {new}", lineterm="")
    )
    return render(
        request,
        "faq_diff.html",
        {
            "user": user,
            "entry_id": entry_id,
            "old": history[old],
            "new": history[new],
            "lines": lines,
        },
    )

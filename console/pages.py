"""Server-rendered pages: login, case (with the reply editor), demo transcript (the queue is
in console/queue.py)."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bot import people, sessions
from bot.events import CaseEvent, CaseEventKind
from bot.models import PendingReply, Role, User, Visibility
from bot.passwords import verify_password
from bot.runtime import Runtime
from console import claims, dates, i18n
from console.auth import CSRF_FIELD, LoginThrottle, check_csrf, csrf_token, require, runtime
from console.i18n import gettext as _
from console.replies import (
    ReplyRefused,
    approve_waiting,
    private_refusal,
    send_back,
    send_reply,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# Interface text is marked with {{ _("...") }} / {% trans %}, in the request's language.
i18n.install(templates.env)
dates.install(templates.env)  # |when, |day and |age, in the reader's language

PageUser = Annotated[User, Depends(require(page=True))]


def render(
    request: Request, name: str, context: dict[str, Any], *, code: int = 200
) -> HTMLResponse:
    flash = request.session.pop("flash", None)
    base = {
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "flash": flash,
        "demo": runtime(request).demo is not None,
        "degraded": runtime(request).degraded,
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=code)


def _throttle(request: Request) -> LoginThrottle:
    throttle = request.app.state.login_throttle
    assert isinstance(throttle, LoginThrottle)
    return throttle


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/queue", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", {"user": None, "error": None, "username": ""})


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    csrf: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    check_csrf(request, csrf)
    throttle = _throttle(request)
    client = request.client.host if request.client else "unknown"
    keys = (f"user:{username.casefold()}", f"ip:{client}")
    context = {"user": None, "username": username}
    if throttle.blocked(*keys):
        error = _("Too many failed logins. Wait a few minutes and try again.")
        return render(request, "login.html", {**context, "error": error}, code=429)
    found = await runtime(request).store.user_credentials(username)
    ok = await asyncio.to_thread(verify_password, found[1] if found else None, password)
    if not ok or found is None or not found[0].active:
        throttle.failed(*keys)
        error = _("Wrong username or password.")
        return render(request, "login.html", {**context, "error": error}, code=401)
    throttle.succeeded(*keys)
    chosen = request.session.get(i18n.SESSION_KEY)
    request.session.clear()  # a fresh session (and CSRF token) at every login
    request.session["uid"] = found[0].id
    request.session["at"] = time.time()  # when it began: deactivation ends older ones
    request.session["sid"] = sessions.new_session_id()  # what logging out ends
    await people.record_login(runtime(request).store, found[0].id)
    if chosen in i18n.LANGUAGES and chosen != found[0].language:
        # Picked on the login page just now: it becomes their choice.
        await runtime(request).store.set_user_language(found[0].id, chosen)
    return RedirectResponse("/queue", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout")
async def logout(request: Request, user: PageUser) -> Response:
    sid = request.session.get("sid")
    if isinstance(sid, str):
        # Ended for every copy of the cookie, on every instance.
        rt = runtime(request)
        await sessions.end(rt.store, sid, user.id, valid_hours=rt.settings.console.session_hours)
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


async def _case_page(
    request: Request,
    case_id: int,
    user: User,
    *,
    use: str | None = None,
    draft: str | None = None,
    error: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    rt = runtime(request)
    await claims.seen(rt, case_id, user)
    detail = await rt.store.get_case(
        case_id, context_messages=rt.settings.pipeline.context_messages
    )
    chosen = next((s for s in detail.suggestions if s.entry_id == use), None)
    pending = await rt.store.pending_replies(case_id=case_id)
    returned = [p for p in pending if p.status.value == "returned" and p.written_by == user.id]
    reply_text = draft if draft is not None else (chosen.answer if chosen else "")
    if draft is None and chosen is None and returned:
        reply_text = returned[-1].text  # sent back: the writer starts from their own text
    return render(
        request,
        "case.html",
        {
            "user": user,
            "detail": detail,
            "case": detail.case,
            "chosen": chosen,
            "reply_text": reply_text,
            "reply_error": error,
            # One key per form: sending the same form twice sends one reply.
            "reply_key": secrets.token_urlsafe(16),
            "private_refusal": await private_refusal(rt, detail.case),
            "pending": pending,
            "notes": await rt.store.case_notes(case_id),
            "earlier": await rt.store.earlier_cases(case_id),
            "combinations": _combinations(rt, detail.case.substances),
            "here": f"/cases/{case_id}",
            "may_claim": user.may_claim,
            "assignees": await claims.assignees(rt) if user.role is Role.COORDINATOR else [],
        },
        code=code,
    )


def _combinations(rt: Runtime, substances: tuple[str, ...]) -> list[dict[str, Any]]:
    """For each pair of substances the case names: the FAQ entries about combining them
    (none: a hint to ask the experts)."""
    named = [s for s in substances if s]
    hints = []
    for i, first in enumerate(named):
        for second in named[i + 1 :]:
            hints.append(
                {"pair": (first, second), "entries": rt.faq.combination_entries(first, second)}
            )
    return hints


@router.get("/cases/{case_id}")
async def case_page(
    request: Request,
    case_id: int,
    user: PageUser,
    use: str | None = None,
    reply_from: int | None = None,
) -> HTMLResponse:
    # "Use this answer" from the answers history: an earlier reply as the starting text.
    draft = await runtime(request).store.reply_text(reply_from) if reply_from else None
    return await _case_page(request, case_id, user, use=use, draft=draft)


@router.post("/cases/{case_id}/reply")
async def reply(
    request: Request,
    case_id: int,
    user: PageUser,
    text: Annotated[str, Form(max_length=4000)],
    visibility: Annotated[str, Form()] = "public",
    entry_id: Annotated[str, Form(max_length=100)] = "",
    reply_key: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    try:
        chosen = Visibility(visibility)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown visibility") from None
    try:
        sent = await send_reply(
            runtime(request),
            case_id,
            user=user,
            text=text,
            visibility=chosen,
            entry_id=entry_id or None,
            request_key=f"form:{user.id}:{reply_key}" if reply_key else None,
        )
    except ReplyRefused as exc:
        # The draft comes back in the page itself, never through the session cookie.
        return await _case_page(
            request, case_id, user, draft=text, error=_("Not sent: %(why)s.", why=exc), code=409
        )
    if isinstance(sent, PendingReply):
        request.session["flash"] = {
            "kind": "ok",
            "text": _(
                "Not sent yet: a second approver has to look at it (%(reasons)s).",
                reasons="; ".join(sent.reasons),
            ),
        }
    else:
        request.session["flash"] = {
            "kind": "ok",
            "text": _("Reply approved and queued for delivery."),
        }
    return RedirectResponse(f"/cases/{case_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/erase-author")
async def erase_author(
    request: Request,
    case_id: int,
    user: Annotated[User, Depends(require(Role.COORDINATOR, page=True))],
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """A coordinator erases everything stored about the person behind a case (their
    request reached the team another way than /privacy delete)."""
    if confirm != "yes":
        request.session["flash"] = {
            "kind": "error",
            "text": _("Not erased: tick the box to confirm; erasure cannot be undone."),
        }
        return RedirectResponse(f"/cases/{case_id}", status_code=status.HTTP_303_SEE_OTHER)
    rt = runtime(request)
    case = (await rt.store.get_case(case_id, context_messages=0)).case
    counts = await rt.store.erase_person(case.author, by=user.id)
    rt.events.publish(CaseEvent(CaseEventKind.CLOSED, case_id))
    request.session["flash"] = {
        "kind": "ok",
        "text": _(
            "Erased: %(messages)s messages and %(cases)s cases of that person, with the "
            "replies to them.",
            messages=counts["messages"],
            cases=counts["cases"],
        ),
    }
    return RedirectResponse("/queue", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/pending/{pending_id}/approve")
async def approve_pending(
    request: Request,
    pending_id: int,
    user: PageUser,
    case_id: Annotated[int, Form()],
    text: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    try:
        await approve_waiting(runtime(request), pending_id, user=user, text=text)
    except ReplyRefused as exc:
        request.session["flash"] = {"kind": "error", "text": _("Not approved: %(why)s.", why=exc)}
    else:
        request.session["flash"] = {"kind": "ok", "text": _("Approved and queued for delivery.")}
    return RedirectResponse(f"/cases/{case_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/pending/{pending_id}/return")
async def return_pending(
    request: Request,
    pending_id: int,
    user: PageUser,
    case_id: Annotated[int, Form()],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        await send_back(runtime(request), pending_id, user=user, comment=comment)
    except ReplyRefused as exc:
        request.session["flash"] = {"kind": "error", "text": _("Not sent back: %(why)s.", why=exc)}
    else:
        request.session["flash"] = {"kind": "ok", "text": _("Sent back to its writer.")}
    return RedirectResponse(f"/cases/{case_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/demo")
async def demo_transcript(request: Request, user: PageUser) -> HTMLResponse:
    demo = runtime(request).demo
    if demo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, i18n.N_("not running in demo mode"))
    lines = demo.transcript()
    channels = {key: ref.title for key, ref in demo.channels.items()}
    return render(request, "demo.html", {"user": user, "lines": lines, "channels": channels})

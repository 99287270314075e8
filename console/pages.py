"""Server-rendered pages: login, queue, case (with the reply editor), demo transcript."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bot.models import CaseStatus, User, Visibility, utcnow
from bot.passwords import verify_password
from console.auth import CSRF_FIELD, LoginThrottle, check_csrf, csrf_token, require, runtime
from console.replies import ReplyRefused, private_refusal, send_reply

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

PageUser = Annotated[User, Depends(require(page=True))]


def _age(value: Any) -> str:
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


templates.env.filters["age"] = _age


def render(
    request: Request, name: str, context: dict[str, Any], *, code: int = 200
) -> HTMLResponse:
    flash = request.session.pop("flash", None)
    base = {
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "flash": flash,
        "demo": runtime(request).demo is not None,
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
        error = "Too many failed logins. Wait a few minutes and try again."
        return render(request, "login.html", {**context, "error": error}, code=429)
    found = await runtime(request).store.user_credentials(username)
    ok = await asyncio.to_thread(verify_password, found[1] if found else None, password)
    if not ok or found is None or not found[0].active:
        throttle.failed(*keys)
        error = "Wrong username or password."
        return render(request, "login.html", {**context, "error": error}, code=401)
    throttle.succeeded(*keys)
    request.session.clear()  # a fresh session (and CSRF token) at every login
    request.session["uid"] = found[0].id
    return RedirectResponse("/queue", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout")
async def logout(request: Request, user: PageUser) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/queue")
async def queue(request: Request, user: PageUser) -> HTMLResponse:
    cases = await runtime(request).store.list_cases(statuses=(CaseStatus.OPEN,))
    return render(request, "queue.html", {"user": user, "cases": cases})


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
    detail = await rt.store.get_case(
        case_id, context_messages=rt.settings.pipeline.context_messages
    )
    chosen = next((s for s in detail.suggestions if s.entry_id == use), None)
    reply_text = draft if draft is not None else (chosen.answer if chosen else "")
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
        },
        code=code,
    )


@router.get("/cases/{case_id}")
async def case_page(
    request: Request, case_id: int, user: PageUser, use: str | None = None
) -> HTMLResponse:
    return await _case_page(request, case_id, user, use=use)


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
        await send_reply(
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
            request, case_id, user, draft=text, error=f"Not sent: {exc}.", code=409
        )
    request.session["flash"] = {"kind": "ok", "text": "Reply approved and queued for delivery."}
    return RedirectResponse(f"/cases/{case_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/demo")
async def demo_transcript(request: Request, user: PageUser) -> HTMLResponse:
    demo = runtime(request).demo
    if demo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not running in demo mode")
    lines = demo.transcript()
    channels = {key: ref.title for key, ref in demo.channels.items()}
    return render(request, "demo.html", {"user": user, "lines": lines, "channels": channels})

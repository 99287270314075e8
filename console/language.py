"""The language switch: ``POST /language`` from the form at the top of every page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from console import i18n
from console.auth import CSRF_FIELD, CSRF_HEADER, authenticate, check_csrf, runtime
from console.queue import back_to

router = APIRouter(include_in_schema=False)


@router.post("/language")
async def choose_language(
    request: Request,
    language: Annotated[str, Form(max_length=10)] = "",
    next_: Annotated[str, Form(alias="next", max_length=2000)] = "",
    csrf: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    """Switch the interface language and go back to the same page. The session keeps the
    choice (the login page has the switch too); a logged-in person's account keeps it as
    well, so it follows them to any browser."""
    user = await authenticate(request)
    if getattr(request.state, "via", None) != "bearer":
        check_csrf(request, csrf or request.headers.get(CSRF_HEADER))
    if language not in i18n.LANGUAGES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            i18n.N_("language: expected one of en, nl, fr"),
        )
    request.session[i18n.SESSION_KEY] = language
    if user is not None:
        await runtime(request).store.set_user_language(user.id, language)
    return RedirectResponse(back_to(next_, "/queue"), status.HTTP_303_SEE_OTHER)

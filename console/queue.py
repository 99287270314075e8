"""The queue page and what is done from it: filters, the live list, claims, on duty.

``/queue`` renders the page; ``/queue/rows`` renders only its list, which
``static/live.js`` fetches again whenever the event stream (``/api/v1/events``) says a
case changed, so the queue updates without a reload and without building HTML in
JavaScript.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.detector import Lexicon
from bot.models import Case, CaseStatus, Role, User
from bot.runtime import Runtime
from bot.settings import LANGUAGES
from console import claims
from console.auth import require, runtime
from console.i18n import gettext as _
from console.pages import render

router = APIRouter(include_in_schema=False)

PageUser = Annotated[User, Depends(require(page=True))]
Coordinator = Annotated[User, Depends(require(Role.COORDINATOR, page=True))]

STATUSES = ("open", "answered", "dismissed", "all")
URGENCIES = ("urgent", "normal")
# FAQ topics and lexicon substances are lowercase keys.
KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters, as GET parameters of the page and the API alike. An empty
    value means "any"."""

    status: str = "open"
    urgency: str = ""
    language: str = ""
    platform: str = ""
    channel: int | None = None
    mine: bool = False
    topic: str = ""
    substance: str = ""

    @classmethod
    def parse(
        cls,
        *,
        status: str = "open",
        urgency: str = "",
        language: str = "",
        platform: str = "",
        channel: str = "",
        mine: str = "",
        topic: str = "",
        substance: str = "",
    ) -> QueueFilter:
        """Check the parameters; a wrong one is an HTTP 422 naming it."""

        def wrong(name: str, value: str, allowed: tuple[str, ...]) -> HTTPException:
            choices = ", ".join(allowed)
            return HTTPException(422, f"{name}: expected one of {choices}, got {value!r}")

        status = status or "open"
        if status not in STATUSES:
            raise wrong("status", status, STATUSES)
        if urgency and urgency not in URGENCIES:
            raise wrong("urgency", urgency, URGENCIES)
        if language and language not in LANGUAGES:
            raise wrong("language", language, LANGUAGES)
        if len(platform) > 20:
            raise HTTPException(422, "platform: too long")
        if channel and not channel.isdigit():
            raise HTTPException(422, f"channel: expected a channel id, got {channel!r}")
        if mine not in ("", "0", "1", "true", "false", "on"):
            raise HTTPException(422, f"mine: expected 1 or 0, got {mine!r}")
        for name, value in (("topic", topic), ("substance", substance)):
            if value and not KEY.fullmatch(value):
                raise HTTPException(422, f"{name}: expected a key such as mdma, got {value!r}")
        return cls(
            status=status,
            urgency=urgency,
            language=language,
            platform=platform,
            channel=int(channel) if channel else None,
            mine=mine in ("1", "true", "on"),
            topic=topic,
            substance=substance,
        )

    async def cases(self, rt: Runtime, user: User, *, limit: int = 200) -> list[Case]:
        statuses = tuple(CaseStatus) if self.status == "all" else (CaseStatus(self.status),)
        return await rt.store.list_cases(
            statuses=statuses,
            limit=limit,
            urgent={"urgent": True, "normal": False}.get(self.urgency),
            language=self.language or None,
            platform=self.platform or None,
            channel_id=self.channel,
            claimed_by=user.id if self.mine else None,
            topic=self.topic or None,
            substance=self.substance or None,
        )

    def query(self) -> str:
        """The filters as a query string ("" for the defaults)."""
        params = {
            "status": self.status if self.status != "open" else "",
            "urgency": self.urgency,
            "language": self.language,
            "platform": self.platform,
            "channel": str(self.channel) if self.channel is not None else "",
            "mine": "1" if self.mine else "",
            "topic": self.topic,
            "substance": self.substance,
        }
        kept = {k: v for k, v in params.items() if v}
        return "?" + urlencode(kept) if kept else ""


@functools.cache
def _substances() -> dict[str, str]:
    """The lexicon's substances (key → label), for the substance filter."""
    return dict(Lexicon.load().labels)


def page_filter(
    status: str = "open",
    urgency: str = "",
    language: str = "",
    platform: str = "",
    channel: str = "",
    mine: str = "",
    topic: str = "",
    substance: str = "",
) -> QueueFilter:
    return QueueFilter.parse(
        status=status,
        urgency=urgency,
        language=language,
        platform=platform,
        channel=channel,
        mine=mine,
        topic=topic,
        substance=substance,
    )


Filters = Annotated[QueueFilter, Depends(page_filter)]


def back_to(target: str, default: str) -> str:
    """Where a form sends the browser back to: only a path on this site."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


async def _rows_context(request: Request, user: User, filters: QueueFilter) -> dict[str, object]:
    rt = runtime(request)
    cases = await filters.cases(rt, user)
    return {
        "user": user,
        "cases": cases,
        "filters": filters,
        "here": "/queue" + filters.query(),
        "may_claim": user.may_claim,
    }


@router.get("/queue")
async def queue(request: Request, user: PageUser, filters: Filters) -> HTMLResponse:
    rt = runtime(request)
    channels = await rt.store.list_channels()
    context = await _rows_context(request, user, filters)
    return render(
        request,
        "queue.html",
        {
            **context,
            "statuses": STATUSES,
            "languages": LANGUAGES,
            "platforms": sorted({c.platform for c in channels}),
            "channels": sorted(channels, key=lambda c: (c.platform, c.title.casefold())),
            "topics": sorted({e.topic for e in await rt.store.faq_entries()}),
            "substances": sorted(_substances().items(), key=lambda kv: kv[1].casefold()),
            "rows_url": "/queue/rows" + filters.query(),
        },
    )


@router.get("/queue/rows")
async def queue_rows(request: Request, user: PageUser, filters: Filters) -> HTMLResponse:
    """The queue's list alone, for the live update."""
    return render(request, "queue_rows.html", await _rows_context(request, user, filters))


def _flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = {"kind": kind, "text": text}


@router.post("/cases/{case_id}/claim")
async def claim(
    request: Request,
    case_id: int,
    user: PageUser,
    next_: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    try:
        await claims.claim(runtime(request), case_id, user)
    except claims.NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except claims.ClaimRefused as exc:
        _flash(request, "error", _("Not claimed: %(why)s.", why=exc))
    else:
        _flash(request, "ok", _("You have case #%(id)s.", id=case_id))
    return RedirectResponse(back_to(next_, f"/cases/{case_id}"), status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/release")
async def release(
    request: Request,
    case_id: int,
    user: PageUser,
    next_: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    try:
        await claims.release(runtime(request), case_id, user)
    except claims.ClaimRefused as exc:
        _flash(request, "error", _("Not released: %(why)s.", why=exc))
    else:
        _flash(request, "ok", _("Case #%(id)s is free for others again.", id=case_id))
    return RedirectResponse(back_to(next_, f"/cases/{case_id}"), status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/assign")
async def assign(
    request: Request,
    case_id: int,
    user: Coordinator,
    assignee: Annotated[str, Form(max_length=20)] = "",
    next_: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    if assignee and not assignee.isdigit():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "assignee: not an account id")
    try:
        given = await claims.assign(
            runtime(request), case_id, int(assignee) if assignee else None, by=user
        )
    except claims.ClaimRefused as exc:
        _flash(request, "error", _("Not reassigned: %(why)s.", why=exc))
    else:
        who = given.username if given else _("nobody")
        _flash(request, "ok", _("Case #%(id)s is now with %(who)s.", id=case_id, who=who))
    return RedirectResponse(back_to(next_, f"/cases/{case_id}"), status.HTTP_303_SEE_OTHER)


@router.post("/duty")
async def duty(
    request: Request,
    user: PageUser,
    on_duty: Annotated[str, Form(max_length=5)] = "",
    next_: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    """On duty: the console alerts this person to urgent cases (a browser notification)."""
    value = on_duty in ("1", "true", "on")
    await runtime(request).store.set_on_duty(user.id, value)
    _flash(
        request,
        "ok",
        _("You are on duty: urgent cases will alert you while the console is open.")
        if value
        else _("You are off duty: no urgent alerts."),
    )
    return RedirectResponse(back_to(next_, "/queue"), status.HTTP_303_SEE_OTHER)

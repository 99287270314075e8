"""The answers history: every reply the team approved, searchable, and reusable in the
reply being written ("use this answer")."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from bot.models import User
from console.auth import require, runtime
from console.pages import render

router = APIRouter(include_in_schema=False)

PageUser = Annotated[User, Depends(require(page=True))]


def _day(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: expected a date like 2026-11-24"
        ) from None


@router.get("/answers")
async def answers(
    request: Request,
    user: PageUser,
    q: str = "",
    topic: str = "",
    substance: str = "",
    language: str = "",
    volunteer: str = "",
    since: str = "",
    until: str = "",
    for_case: int | None = None,
) -> HTMLResponse:
    """Search earlier answers; with ``for_case``, each one can go into that case's reply."""
    rt = runtime(request)
    until_day = _day(until, "until")
    found = await rt.store.past_answers(
        text=q[:200],
        entry_id=topic or None,
        substance=substance or None,
        language=language or None,
        volunteer=volunteer or None,
        since=_day(since, "since"),
        until=until_day + dt.timedelta(days=1) if until_day else None,
    )
    return render(
        request,
        "answers.html",
        {
            "user": user,
            "answers": found,
            "filters": {
                "q": q,
                "topic": topic,
                "substance": substance,
                "language": language,
                "volunteer": volunteer,
                "since": since,
                "until": until,
            },
            "for_case": for_case,
            "entries": sorted(e.id for e in await rt.store.faq_entries()),
            "volunteers": sorted(u.username for u in await rt.store.list_users()),
        },
    )

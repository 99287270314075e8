"""Channels (coordinators): the opted-in channels with their consent record; pause and
resume watching, a channel's language and its own, shorter, retention
(bot/channel_admin.py). The same for scripts under /api/v1."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from bot import channel_admin
from bot.models import Role, User
from bot.settings import LANGUAGES
from console.auth import require, runtime
from console.i18n import gettext as _
from console.pages import render

router = APIRouter()

Coordinator = Annotated[User, Depends(require(Role.COORDINATOR, page=True))]
ApiCoordinator = Annotated[User, Depends(require(Role.COORDINATOR))]


@router.get("/channels", include_in_schema=False)
async def channels_page(request: Request, user: Coordinator) -> HTMLResponse:
    rt = runtime(request)
    found = await channel_admin.channels(rt.store)
    return render(
        request,
        "channels.html",
        {
            "user": user,
            "channels": found,
            "languages": LANGUAGES,
            "default_language": rt.settings.general.default_language,
            "privacy": rt.settings.privacy,
        },
    )


def _done(request: Request, kind: str, text: str) -> Response:
    request.session["flash"] = {"kind": kind, "text": text}
    return RedirectResponse("/channels", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/channels/{channel_id}/watch", include_in_schema=False)
async def watch(
    request: Request,
    channel_id: int,
    user: Coordinator,
    paused: Annotated[str, Form(max_length=1)],
) -> Response:
    if paused not in ("0", "1"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "paused: expected 0 or 1")
    try:
        info = await channel_admin.set_paused(
            runtime(request).store, channel_id, paused == "1", by=user.id
        )
    except channel_admin.ChannelAdminError as exc:
        return _done(request, "error", _("Not changed: %(why)s.", why=exc))
    if info.paused_at is not None:
        return _done(
            request,
            "ok",
            _(
                "Paused: nothing from %(title)s is read or stored until you resume.",
                title=info.title,
            ),
        )
    return _done(request, "ok", _("Watching %(title)s again, from now on.", title=info.title))


def _days(value: str, name: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise channel_admin.ChannelAdminError(f"{name}: a whole number of days, or empty")
    return int(value)


@router.post("/channels/{channel_id}/settings", include_in_schema=False)
async def channel_settings(
    request: Request,
    channel_id: int,
    user: Coordinator,
    language: Annotated[str, Form(max_length=5)] = "",
    retention_unanswered_days: Annotated[str, Form(max_length=5)] = "",
    retention_answered_days: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    rt = runtime(request)
    try:
        info = await channel_admin.set_options(
            rt.store,
            channel_id,
            language=language or None,
            retention_unanswered_days=_days(
                retention_unanswered_days, "days kept without an answer"
            ),
            retention_answered_days=_days(retention_answered_days, "days kept once answered"),
            privacy=rt.settings.privacy,
            by=user.id,
        )
    except channel_admin.ChannelAdminError as exc:
        return _done(request, "error", _("Not saved: %(why)s.", why=exc))
    return _done(request, "ok", _("Saved the settings of %(title)s.", title=info.title))


# -- the API --------------------------------------------------------------------------------------


class ChannelPatch(BaseModel):
    paused: bool | None = None
    language: str | None = Field(default=None, description="nl, fr, en; null: the default")
    retention_unanswered_days: int | None = Field(
        default=None, description="null: privacy.retention_unanswered_days"
    )
    retention_answered_days: int | None = Field(
        default=None, description="null: privacy.retention_answered_days"
    )


@router.get("/api/v1/channels", tags=["api"])
async def api_channels(request: Request, user: ApiCoordinator) -> dict[str, Any]:
    """Group channels and servers with their consent record and status (coordinators)."""
    found = await channel_admin.channels(runtime(request).store)
    return {"channels": [c.as_dict() for c in found]}


@router.patch("/api/v1/channels/{channel_id}", tags=["api"])
async def api_change_channel(
    request: Request, channel_id: int, body: ChannelPatch, user: ApiCoordinator
) -> dict[str, Any]:
    """Pause or resume watching; set the language or the channel's own retention. Only
    the fields sent change; 422 for a value the rules refuse."""
    rt = runtime(request)
    sent = body.model_fields_set
    try:
        info = await channel_admin.channel(rt.store, channel_id)
        options = {"language", "retention_unanswered_days", "retention_answered_days"}
        if sent & options:
            info = await channel_admin.set_options(
                rt.store,
                channel_id,
                language=body.language if "language" in sent else info.language,
                retention_unanswered_days=body.retention_unanswered_days
                if "retention_unanswered_days" in sent
                else info.retention_unanswered_days,
                retention_answered_days=body.retention_answered_days
                if "retention_answered_days" in sent
                else info.retention_answered_days,
                privacy=rt.settings.privacy,
                by=user.id,
            )
        if body.paused is not None:
            info = await channel_admin.set_paused(rt.store, channel_id, body.paused, by=user.id)
    except channel_admin.ChannelAdminError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return info.as_dict()

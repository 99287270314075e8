"""Your account: on duty, and your own Telegram or Discord account for urgent alerts by
private message (a one-time code sent to the bot with ``/link``; see
:mod:`bot.private_alerts`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot import private_alerts
from bot.models import User
from bot.runtime import Runtime
from console.auth import require, runtime
from console.i18n import gettext as _
from console.pages import render

router = APIRouter(include_in_schema=False)

PageUser = Annotated[User, Depends(require(page=True))]


def _platforms(rt: Runtime) -> list[str]:
    """The platforms whose bot runs for this deployment (here or in another process)."""
    running = set(rt.adapters) | set(rt.elsewhere)
    return [p for p in private_alerts.PLATFORMS if p in running]


async def _page(request: Request, user: User, *, code: str | None = None) -> HTMLResponse:
    rt = runtime(request)
    telegram = rt.adapters.get("telegram")
    context: dict[str, Any] = {
        "user": user,
        "enabled": rt.settings.console.private_alerts,
        "platforms": _platforms(rt),
        "links": {link.platform: link for link in await private_alerts.links(rt.store, user.id)},
        "names": private_alerts.PLATFORM_NAMES,
        "code": code,
        "code_minutes": private_alerts.LINK_CODE_MINUTES,
        "telegram_bot": getattr(telegram, "username", None),
    }
    return render(request, "account.html", context)


@router.get("/account")
async def account(request: Request, user: PageUser) -> HTMLResponse:
    return await _page(request, user)


@router.post("/account/code")
async def link_code(request: Request, user: PageUser) -> HTMLResponse:
    """A fresh one-time code, shown once (in this answer, never stored in clear)."""
    rt = runtime(request)
    if not rt.settings.console.private_alerts or not _platforms(rt):
        raise HTTPException(
            status.HTTP_409_CONFLICT, "alerts by private message are not available here"
        )
    code = await private_alerts.new_code(rt.store, user.id)
    return await _page(request, user, code=code)


@router.post("/account/unlink")
async def unlink(
    request: Request,
    user: PageUser,
    platform: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    if platform not in private_alerts.PLATFORMS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown platform")
    done = await private_alerts.unlink(runtime(request).store, user.id, platform)
    name = private_alerts.PLATFORM_NAMES[platform]
    request.session["flash"] = {
        "kind": "ok",
        "text": _("Unlinked: no more urgent alerts on %(platform)s.", platform=name)
        if done
        else _("Your %(platform)s account was not linked.", platform=name),
    }
    return RedirectResponse("/account", status_code=status.HTTP_303_SEE_OTHER)

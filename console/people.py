"""People (coordinators): the team's accounts, invitations by one-time link, and the
public page where an invitee chooses their username and password (bot/people.py,
bot/invites.py). The same for scripts under /api/v1."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from bot import invites, people
from bot.models import Role, User
from bot.passwords import MIN_PASSWORD_LENGTH, hash_password
from console.auth import CSRF_FIELD, CSRF_HEADER, check_csrf, require, runtime
from console.i18n import gettext as _
from console.pages import render

router = APIRouter()

Coordinator = Annotated[User, Depends(require(Role.COORDINATOR, page=True))]
ApiCoordinator = Annotated[User, Depends(require(Role.COORDINATOR))]


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown role") from None


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "expected 0 or 1")
    return value == "1"


def invite_url(request: Request, token: str) -> str:
    return str(request.url_for("invite_form", token=token))


async def _people_page(
    request: Request,
    user: User,
    *,
    new_link: str | None = None,
    new_invite: invites.Invite | None = None,
    code: int = 200,
) -> HTMLResponse:
    rt = runtime(request)
    return render(
        request,
        "people.html",
        {
            "user": user,
            "people": await people.people(rt.store),
            "invites": await invites.open_invites(rt.store),
            "roles": list(Role),
            "new_link": new_link,
            "new_invite": new_invite,
            "invite_hours": rt.settings.console.invite_hours,
        },
        code=code,
    )


def _done(request: Request, kind: str, text: str) -> Response:
    request.session["flash"] = {"kind": kind, "text": text}
    return RedirectResponse("/people", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/people", include_in_schema=False)
async def people_page(request: Request, user: Coordinator) -> HTMLResponse:
    return await _people_page(request, user)


@router.post("/people/invite", include_in_schema=False)
async def create_invite(
    request: Request,
    user: Coordinator,
    role: Annotated[str, Form(max_length=20)] = "volunteer",
    trained: Annotated[str, Form(max_length=1)] = "0",
) -> HTMLResponse:
    """The link is shown on the page that answers, once: only its hash is kept."""
    rt = runtime(request)
    token, invite = await invites.create(
        rt.store,
        role=_role(role),
        trained=_flag(trained),
        by=user.id,
        hours=rt.settings.console.invite_hours,
    )
    return await _people_page(request, user, new_link=invite_url(request, token), new_invite=invite)


@router.post("/people/invites/{invite_id}/revoke", include_in_schema=False)
async def revoke_invite(request: Request, invite_id: int, user: Coordinator) -> Response:
    try:
        await invites.revoke(runtime(request).store, invite_id, by=user.id)
    except invites.InviteError as exc:
        return _done(request, "error", _("Not withdrawn: %(why)s.", why=exc))
    return _done(request, "ok", _("Invitation withdrawn: its link no longer works."))


@router.post("/people/{user_id}/role", include_in_schema=False)
async def change_role(
    request: Request,
    user_id: int,
    user: Coordinator,
    role: Annotated[str, Form(max_length=20)],
) -> Response:
    try:
        changed = await people.set_role(runtime(request).store, user_id, _role(role), by=user)
    except people.PeopleError as exc:
        return _done(request, "error", _("Not changed: %(why)s.", why=exc))
    return _done(
        request,
        "ok",
        _("%(name)s is now %(role)s.", name=changed.username, role=_(changed.role.value)),
    )


@router.post("/people/{user_id}/trained", include_in_schema=False)
async def change_trained(
    request: Request,
    user_id: int,
    user: Coordinator,
    trained: Annotated[str, Form(max_length=1)],
) -> Response:
    changed = await people.set_trained(runtime(request).store, user_id, _flag(trained), by=user)
    if changed.trained:
        text = _("%(name)s is trained: may claim and answer cases.", name=changed.username)
    else:
        text = _("%(name)s is not marked trained.", name=changed.username)
    return _done(request, "ok", text)


@router.post("/people/{user_id}/active", include_in_schema=False)
async def change_active(
    request: Request,
    user_id: int,
    user: Coordinator,
    active: Annotated[str, Form(max_length=1)],
) -> Response:
    try:
        changed = await people.set_active(runtime(request).store, user_id, _flag(active), by=user)
    except people.PeopleError as exc:
        return _done(request, "error", _("Not changed: %(why)s.", why=exc))
    if changed.active:
        return _done(request, "ok", _("%(name)s can log in again.", name=changed.username))
    return _done(
        request,
        "ok",
        _(
            "%(name)s is deactivated: logged out everywhere, API tokens deleted, open "
            "claims released.",
            name=changed.username,
        ),
    )


# -- the invitee's page (public: the link is the key) -------------------------------------------


def _invite_page(
    request: Request,
    token: str,
    *,
    invite: invites.Invite | None,
    refused: invites.InviteError | None = None,
    error: str | None = None,
    username: str = "",
    code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "invite.html",
        {
            "user": None,
            "token": token,
            "invite": invite,
            "refused": refused,
            "error": error,
            "username": username,
            "min_password": MIN_PASSWORD_LENGTH,
        },
        code=code,
    )


def _refused_code(refused: invites.InviteError) -> int:
    return status.HTTP_404_NOT_FOUND if refused.state == "unknown" else status.HTTP_410_GONE


@router.get("/invite/{token}", name="invite_form", include_in_schema=False)
async def invite_form(request: Request, token: str) -> HTMLResponse:
    found = await invites.find(runtime(request).store, token[:100])
    if found is None or found.state() != "open":
        refused = invites.refusal(found)
        return _invite_page(
            request, token, invite=found, refused=refused, code=_refused_code(refused)
        )
    return _invite_page(request, token, invite=found)


@router.post("/invite/{token}", include_in_schema=False)
async def accept_invite(
    request: Request,
    token: str,
    username: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=invites.MAX_PASSWORD_LENGTH + 1)] = "",
    password_again: Annotated[str, Form(max_length=invites.MAX_PASSWORD_LENGTH + 1)] = "",
    csrf: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    # Nobody is logged in here, so this page checks the session's CSRF token itself
    # (like the login form): the form carries it; a script may send the header.
    check_csrf(request, csrf or request.headers.get(CSRF_HEADER))
    store = runtime(request).store
    found = await invites.find(store, token[:100])
    if found is None or found.state() != "open":
        refused = invites.refusal(found)
        return _invite_page(
            request, token, invite=found, refused=refused, code=_refused_code(refused)
        )
    username = username.strip()
    try:
        invites.check_username(username)
        invites.check_password(password, password_again)
        digest = await asyncio.to_thread(hash_password, password)
        await invites.accept(store, token, username=username, password_hash=digest)
    except invites.InviteError as exc:
        if exc.state != "open":  # spent at this very moment by someone else
            return _invite_page(request, token, invite=found, refused=exc, code=_refused_code(exc))
        code = (
            status.HTTP_409_CONFLICT
            if "taken" in str(exc)
            else status.HTTP_422_UNPROCESSABLE_CONTENT
        )
        return _invite_page(
            request, token, invite=found, error=str(exc), username=username, code=code
        )
    request.session["flash"] = {
        "kind": "ok",
        "text": _(
            "Welcome, %(name)s: your account is ready. Log in with your new password.",
            name=username,
        ),
    }
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


# -- the API --------------------------------------------------------------------------------------


class PersonPatch(BaseModel):
    role: Role | None = None
    trained: bool | None = None
    active: bool | None = None


class InviteIn(BaseModel):
    role: Role = Role.VOLUNTEER
    trained: bool = False


@router.get("/api/v1/people", tags=["api"])
async def api_people(request: Request, user: ApiCoordinator) -> dict[str, Any]:
    """Every account, and the invitations that can still be used (coordinators)."""
    store = runtime(request).store
    return {
        "people": [p.as_dict() for p in await people.people(store)],
        "invites": [i.as_dict() for i in await invites.open_invites(store)],
    }


@router.patch("/api/v1/people/{user_id}", tags=["api"])
async def api_change_person(
    request: Request, user_id: int, body: PersonPatch, user: ApiCoordinator
) -> dict[str, Any]:
    """Change an account's role, training or whether it is active. 409 when a
    coordinator would demote or deactivate themselves."""
    store = runtime(request).store
    if user_id == user.id and (body.role not in (None, Role.COORDINATOR) or body.active is False):
        # Refused before anything changes, not halfway through the request.
        raise HTTPException(
            status.HTTP_409_CONFLICT, "you cannot demote or deactivate your own account"
        )
    try:
        changed = await people.person(store, user_id)
        if body.role is not None:
            changed = await people.set_role(store, user_id, body.role, by=user)
        if body.trained is not None:
            changed = await people.set_trained(store, user_id, body.trained, by=user)
        if body.active is not None:
            changed = await people.set_active(store, user_id, body.active, by=user)
    except people.PeopleError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return changed.as_dict()


@router.post("/api/v1/invites", tags=["api"], status_code=status.HTTP_201_CREATED)
async def api_invite(request: Request, body: InviteIn, user: ApiCoordinator) -> dict[str, Any]:
    """A one-time invitation link; the answer is the only place it appears."""
    rt = runtime(request)
    token, invite = await invites.create(
        rt.store,
        role=body.role,
        trained=body.trained,
        by=user.id,
        hours=rt.settings.console.invite_hours,
    )
    return {"url": invite_url(request, token), "invite": invite.as_dict()}

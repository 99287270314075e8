"""Claiming a case before answering it: one set of rules for the pages and the API.

A claim shows the team who is on a case. It lapses after ``console.claim_minutes``
without an action from its holder (opening the case, sending), one person holds at most
``console.max_claims`` open cases, only trained volunteers (and experts and coordinators)
claim, and a coordinator can give a case to someone else. The store checks and changes a
claim in one UPDATE, so two people never both hold a case.
"""

from __future__ import annotations

from bot.events import CaseEvent, CaseEventKind
from bot.models import Role, User
from bot.runtime import Runtime
from bot.store import Conflict


class ClaimRefused(Exception):
    """The claim cannot be changed as asked; the message says why."""


class NotAllowed(ClaimRefused):
    """The user's role or training does not allow it."""


def _changed(rt: Runtime, case_id: int) -> None:
    rt.events.publish(CaseEvent(CaseEventKind.CLAIMED, case_id))


async def claim(rt: Runtime, case_id: int, user: User) -> None:
    """Claim ``case_id`` for ``user`` (or renew their claim)."""
    if not user.may_claim:
        raise NotAllowed("only trained volunteers may claim cases; ask a coordinator")
    try:
        await rt.store.claim_case(
            case_id,
            user.id,
            lapsed_before=rt.claim_lapsed_before(),
            max_claims=rt.settings.console.max_claims,
        )
    except Conflict as exc:
        raise ClaimRefused(str(exc)) from None
    _changed(rt, case_id)


async def release(rt: Runtime, case_id: int, user: User) -> None:
    """Give back the claim ``user`` holds on ``case_id``."""
    try:
        await rt.store.release_case(case_id, user.id)
    except Conflict as exc:
        raise ClaimRefused(str(exc)) from None
    _changed(rt, case_id)


async def assign(rt: Runtime, case_id: int, assignee_id: int | None, *, by: User) -> User | None:
    """A coordinator gives ``case_id`` to ``assignee_id``, or to nobody when None."""
    if by.role is not Role.COORDINATOR:
        raise NotAllowed("only coordinators may reassign cases")
    assignee = None
    if assignee_id is not None:
        assignee = await rt.store.get_user(assignee_id)
        if assignee is None or not assignee.active:
            raise ClaimRefused("no such active account")
        if not assignee.may_claim:
            raise ClaimRefused(f"{assignee.username} is not trained to take cases")
    try:
        await rt.store.assign_case(case_id, assignee_id, by=by.id)
    except Conflict as exc:
        raise ClaimRefused(str(exc)) from None
    _changed(rt, case_id)
    return assignee


async def seen(rt: Runtime, case_id: int, user: User) -> None:
    """``user`` opened the case: if they hold it, the claim's inactivity clock restarts."""
    await rt.store.touch_claim(case_id, user.id, lapsed_before=rt.claim_lapsed_before())


async def assignees(rt: Runtime) -> list[User]:
    """The accounts a coordinator may give a case to."""
    return [u for u in await rt.store.list_users() if u.may_claim]

"""Sending a reply from the console: one function for the pages and the API alike."""

from __future__ import annotations

from bot.models import CaseStatus, Reply, User, Visibility
from bot.runtime import Runtime


class ReplyRefused(Exception):
    """The reply cannot be sent as asked; the message says why."""


async def send_reply(
    rt: Runtime,
    case_id: int,
    *,
    user: User,
    text: str,
    visibility: Visibility,
    entry_id: str | None = None,
) -> Reply:
    text = text.strip()
    if not text:
        raise ReplyRefused("the reply is empty")
    detail = await rt.store.get_case(case_id, context_messages=0)
    case = detail.case
    if case.status is CaseStatus.DISMISSED:
        raise ReplyRefused("this case was dismissed")
    if case.claimed_by is not None and case.claimed_by != user.id:
        raise ReplyRefused(f"this case is claimed by {case.claimed_by_name}")
    reply = await rt.store.approve_reply(
        case_id,
        text=text,
        visibility=visibility,
        written_by=user.id,
        approved_by=user.id,
        entry_id=entry_id,
    )
    rt.outbox.wakeup.set()
    return reply

"""Sending a reply from the console: one function for the pages and the API alike."""

from __future__ import annotations

from bot.models import Reply, Role, User, Visibility
from bot.runtime import Runtime
from bot.store import Conflict


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
    request_key: str | None = None,
) -> Reply:
    """Approve ``text`` as ``user`` and queue it; claims the case if nobody has it."""
    text = text.strip()
    if not text:
        raise ReplyRefused("the reply is empty")
    if user.role is Role.VOLUNTEER and not user.trained:
        raise ReplyRefused("only trained volunteers may answer; ask a coordinator")
    try:
        reply = await rt.store.approve_reply(
            case_id,
            text=text,
            visibility=visibility,
            written_by=user.id,
            approved_by=user.id,
            entry_id=entry_id,
            request_key=request_key,
        )
    except Conflict as exc:
        raise ReplyRefused(str(exc)) from None
    rt.outbox.wakeup.set()
    return reply

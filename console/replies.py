"""Sending a reply from the console: one function for the pages and the API alike."""

from __future__ import annotations

from bot.models import Case, Reply, Role, User, Visibility
from bot.runtime import Runtime
from bot.store import Conflict


class ReplyRefused(Exception):
    """The reply cannot be sent as asked; the message says why."""


async def private_refusal(rt: Runtime, case: Case) -> str | None:
    """Why the author of ``case`` cannot get a private message, or None if they can.

    Asked before a volunteer writes, so the console says so instead of failing later.
    """
    if case.channel_kind == "direct":
        return "this conversation is already private: reply in it"
    adapter = rt.adapters.get(case.platform)
    if adapter is None:
        return f"the {case.platform} connection is not running"
    if not await rt.store.has_contact(case.author):
        return "no private address is kept for this person"
    return adapter.private_refusal(await rt.store.direct_ok(case.author))


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
    if visibility is Visibility.PRIVATE:
        case = (await rt.store.get_case(case_id, context_messages=0)).case
        refusal = await private_refusal(rt, case)
        if refusal:
            raise ReplyRefused(f"no private message: {refusal}")
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

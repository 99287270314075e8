"""Sending a reply from the console: one function for the pages and the API alike."""

from __future__ import annotations

from bot.approval import second_approval_reasons
from bot.events import CaseEvent, CaseEventKind
from bot.models import Case, PendingReply, Reply, Role, User, Visibility
from bot.runtime import Runtime
from bot.store import Conflict, NotFound


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
) -> Reply | PendingReply:
    """Approve ``text`` as ``user`` and queue it; claims the case if nobody has it. When
    the four-eyes policy applies, the reply waits for a second approver instead (the
    :class:`PendingReply` says why)."""
    text = text.strip()
    if not text:
        raise ReplyRefused("the reply is empty")
    if user.role is Role.VOLUNTEER and not user.trained:
        raise ReplyRefused("only trained volunteers may answer; ask a coordinator")
    detail = await rt.store.get_case(case_id, context_messages=0)
    if visibility is Visibility.PRIVATE:
        refusal = await private_refusal(rt, detail.case)
        if refusal:
            raise ReplyRefused(f"no private message: {refusal}")
    reasons = second_approval_reasons(
        rt.settings.approval, detail, entry_id=entry_id, tags_of=rt.faq.tags
    )
    if reasons:
        try:
            pending = await rt.store.propose_reply(
                case_id,
                text=text,
                visibility=visibility,
                written_by=user.id,
                reasons=reasons,
                entry_id=entry_id,
                request_key=request_key,
                claim_lapsed_before=rt.claim_lapsed_before(),
            )
        except Conflict as exc:
            raise ReplyRefused(str(exc)) from None
        rt.events.publish(CaseEvent(CaseEventKind.UPDATED, case_id))
        return pending
    try:
        reply = await rt.store.approve_reply(
            case_id,
            text=text,
            visibility=visibility,
            written_by=user.id,
            approved_by=user.id,
            entry_id=entry_id,
            request_key=request_key,
            claim_lapsed_before=rt.claim_lapsed_before(),
        )
    except Conflict as exc:
        raise ReplyRefused(str(exc)) from None
    rt.outbox.wakeup.set()
    rt.events.publish(CaseEvent(CaseEventKind.ANSWERED, case_id))
    return reply


async def approve_waiting(
    rt: Runtime, pending_id: int, *, user: User, text: str | None = None
) -> Reply:
    """A second approver approves a waiting reply (as written, or as they edited it)."""
    if not user.may_claim:
        raise ReplyRefused("only trained volunteers, experts and coordinators may approve")
    try:
        reply = await rt.store.approve_pending(pending_id, user.id, text=text)
    except (Conflict, NotFound) as exc:
        raise ReplyRefused(str(exc)) from None
    rt.outbox.wakeup.set()
    rt.events.publish(CaseEvent(CaseEventKind.ANSWERED, reply.case_id))
    return reply


async def send_back(rt: Runtime, pending_id: int, *, user: User, comment: str) -> None:
    """A second approver returns a waiting reply to its writer with a comment."""
    comment = comment.strip()
    if not comment:
        raise ReplyRefused("say what should change")
    if not user.may_claim:
        raise ReplyRefused("only trained volunteers, experts and coordinators may review")
    found = await rt.store.pending_replies(awaiting=True)
    pending = next((p for p in found if p.id == pending_id), None)
    if pending is None:
        raise ReplyRefused("this reply is no longer waiting")
    if pending.written_by == user.id:
        raise ReplyRefused("a second person has to review a reply you wrote")
    try:
        await rt.store.return_pending(pending_id, user.id, comment)
    except Conflict as exc:
        raise ReplyRefused(str(exc)) from None
    rt.events.publish(CaseEvent(CaseEventKind.UPDATED, pending.case_id))

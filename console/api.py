"""The JSON API, /api/v1: the console's own service layer, with the same permissions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from bot.models import (
    Case,
    CaseDetail,
    Detection,
    DismissReason,
    PendingReply,
    PendingStatus,
    Reply,
    StoredMessage,
    User,
    Visibility,
)
from console import claims, detection_pages
from console.auth import require, runtime
from console.queue import QueueFilter
from console.replies import ReplyRefused, approve_waiting, send_back, send_reply

router = APIRouter(prefix="/api/v1", tags=["api"])

MAX_REPLY_CHARS = 4000
AnyUser = Annotated[User, Depends(require())]


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_REPLY_CHARS)
    visibility: Literal["public", "private"] = "public"
    entry_id: str | None = Field(default=None, max_length=100)


class AssignIn(BaseModel):
    user_id: int | None = Field(description="the account to give the case to; null: nobody")


class DutyIn(BaseModel):
    on_duty: bool


class DetectIn(BaseModel):
    text: str = Field(max_length=20000)


def case_json(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "status": case.status.value,
        "dismiss_reason": case.dismiss_reason.value if case.dismiss_reason else None,
        "urgent": case.urgent,
        "score": case.score,
        "language": case.language,
        "platform": case.platform,
        "channel": {"id": case.channel_id, "title": case.channel_title},
        "author": case.author,
        "excerpt": case.excerpt,
        "reasons": [r.as_dict() for r in case.reasons],
        "substances": list(case.substances),
        "claimed_by": case.claimed_by_name,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
    }


def message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "platform_message_id": message.platform_message_id,
        "author": message.author,
        "author_name": message.author_name,
        "text": message.text,
        "sent_at": message.sent_at.isoformat(),
        "in_case": message.case_id is not None,
        "flagged": message.flagged,
        "urgent": message.urgent,
        "score": message.score,
        "reasons": [r.as_dict() for r in message.reasons],
        "language": message.language,
    }


def reply_json(reply: Reply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "case_id": reply.case_id,
        "text": reply.text,
        "visibility": reply.visibility.value,
        "status": reply.status.value,
        "approved_by": reply.approved_by_name,
        "created_at": reply.created_at.isoformat(),
        "sent_at": reply.sent_at.isoformat() if reply.sent_at else None,
        "error": reply.error,
    }


def pending_json(pending: PendingReply) -> dict[str, Any]:
    return {
        "id": pending.id,
        "case_id": pending.case_id,
        "text": pending.text,
        "visibility": pending.visibility.value,
        "status": "awaiting_approval"
        if pending.status is PendingStatus.AWAITING
        else pending.status.value,
        "reasons": list(pending.reasons),
        "written_by": pending.written_by_name,
        "reviewed_by": pending.reviewed_by_name,
        "review_comment": pending.review_comment,
        "reply_id": pending.reply_id,
        "created_at": pending.created_at.isoformat(),
    }


def detail_json(detail: CaseDetail) -> dict[str, Any]:
    return {
        **case_json(detail.case),
        "messages": [message_json(m) for m in detail.messages],
        "suggestions": [
            {
                "id": s.entry_id,
                "entry_id": s.entry_id,
                "topic": s.topic,
                "rank": s.rank,
                "score": s.score,
                "why": list(s.why),
                "status": s.status,
                "language": s.language,
                "question": s.question,
                "answer": s.answer,
            }
            for s in detail.suggestions
        ],
        "replies": [reply_json(r) for r in detail.replies],
    }


def detection_json(d: Detection) -> dict[str, Any]:
    return {
        "flagged": d.flagged,
        "urgent": d.urgent,
        "score": d.score,
        "reasons": [r.as_dict() for r in d.reasons],
        "language": d.language,
        "substances": list(d.substances),
    }


@router.get("/cases")
async def list_cases(
    request: Request,
    user: AnyUser,
    status_: Annotated[
        Literal["open", "answered", "dismissed", "all"], Query(alias="status")
    ] = "open",
    urgency: Annotated[Literal["", "urgent", "normal"], Query()] = "",
    language: Annotated[Literal["", "nl", "fr", "en"], Query()] = "",
    platform: Annotated[str, Query(max_length=20)] = "",
    channel: Annotated[int | None, Query(description="a channel id")] = None,
    mine: Annotated[bool, Query(description="only cases I hold")] = False,
    topic: Annotated[
        str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$", description="a FAQ topic")
    ] = "",
    substance: Annotated[
        str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$", description="a lexicon substance")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The queue: cases in one status (default open), urgent first, then oldest first,
    narrowed by the same filters as the console's queue page."""
    filters = QueueFilter(
        status=status_,
        urgency=urgency,
        language=language,
        platform=platform,
        channel=channel,
        mine=mine,
        topic=topic,
        substance=substance,
    )
    cases = await filters.cases(runtime(request), user, limit=limit)
    return {"cases": [case_json(c) for c in cases]}


@router.get("/cases/{case_id}")
async def get_case(case_id: int, request: Request, user: AnyUser) -> dict[str, Any]:
    """One case with its messages (and their context), suggestions and replies."""
    rt = runtime(request)
    await claims.seen(rt, case_id, user)
    detail = await rt.store.get_case(
        case_id, context_messages=rt.settings.pipeline.context_messages
    )
    return detail_json(detail)


def _refused(exc: claims.ClaimRefused) -> HTTPException:
    code = 403 if isinstance(exc, claims.NotAllowed) else 409
    return HTTPException(code, str(exc))


async def _case(request: Request, case_id: int) -> dict[str, Any]:
    detail = await runtime(request).store.get_case(case_id, context_messages=0)
    return case_json(detail.case)


@router.post("/cases/{case_id}/claim")
async def claim_case(case_id: int, request: Request, user: AnyUser) -> dict[str, Any]:
    """Claim an open case (or renew one's claim). 403 for an untrained volunteer; 409
    when someone else holds it or the caller already holds ``console.max_claims``."""
    try:
        await claims.claim(runtime(request), case_id, user)
    except claims.ClaimRefused as exc:
        raise _refused(exc) from None
    return await _case(request, case_id)


@router.delete("/cases/{case_id}/claim")
async def release_case(case_id: int, request: Request, user: AnyUser) -> dict[str, Any]:
    """Give back one's claim on an open case."""
    try:
        await claims.release(runtime(request), case_id, user)
    except claims.ClaimRefused as exc:
        raise _refused(exc) from None
    return await _case(request, case_id)


@router.put("/cases/{case_id}/assignee")
async def assign_case(
    case_id: int, body: AssignIn, request: Request, user: AnyUser
) -> dict[str, Any]:
    """A coordinator gives an open case to someone (or to nobody)."""
    try:
        await claims.assign(runtime(request), case_id, body.user_id, by=user)
    except claims.ClaimRefused as exc:
        raise _refused(exc) from None
    return await _case(request, case_id)


class DismissIn(BaseModel):
    reason: DismissReason = Field(
        description="not_drug_related and spam teach detection the message was not "
        "drug-related, already_answered that it was; not_our_job teaches nothing"
    )


@router.post("/cases/{case_id}/dismiss")
async def dismiss_case(
    case_id: int, body: DismissIn, request: Request, user: AnyUser
) -> dict[str, Any]:
    """Dismiss an open case with a reason, which labels its flagged messages for
    `peerdesk detect retrain`. 403 for an untrained volunteer; 409 when someone else
    holds the case or it is no longer open."""
    try:
        await detection_pages.dismiss(runtime(request), case_id, user, body.reason)
    except claims.ClaimRefused as exc:
        raise _refused(exc) from None
    return await _case(request, case_id)


@router.put("/me/duty")
async def set_duty(body: DutyIn, request: Request, user: AnyUser) -> dict[str, Any]:
    """Go on duty (urgent cases alert you in the console) or off duty."""
    await runtime(request).store.set_on_duty(user.id, body.on_duty)
    return {"username": user.username, "on_duty": body.on_duty}


#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request, user: AnyUser) -> Response:
    """Server-Sent Events: one ``case`` event (``{"kind", "case", "urgent", "at"}``)
    whenever a case is opened, updated, claimed, answered or closed, or (kind ``alert``)
    when an urgent case is still unclaimed, or (kind ``expert_answer``, with ``user``) when
    an expert answered a question you asked; an event meant for one person goes to them
    only. The console's queue updates itself from these."""
    rt = runtime(request)

    async def stream() -> AsyncIterator[str]:
        # Subscribed before the first line goes out: a client that sees the stream open
        # misses nothing published after that.
        async with rt.events.subscribe() as subscription:
            yield "retry: 3000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(subscription.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:  # shutting down
                    return
                if event.user is not None and event.user != user.id:
                    continue  # meant for someone else
                yield f"event: case\ndata: {json.dumps(event.as_dict())}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.post("/cases/{case_id}/replies", status_code=status.HTTP_201_CREATED)
async def post_reply(
    case_id: int,
    body: ReplyIn,
    request: Request,
    response: Response,
    user: AnyUser,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> dict[str, Any]:
    """Approve a reply and queue it for delivery; claims the case if nobody has it.

    When the four-eyes policy applies (urgent case, high-risk topic, a minor) the reply
    is not sent: it waits for a second approver, and the answer is 202 with
    ``"status": "awaiting_approval"`` and the ``reasons``.

    Send an ``Idempotency-Key`` header to make a retried call safe: the same key returns
    the reply it made the first time.
    """
    try:
        reply = await send_reply(
            runtime(request),
            case_id,
            user=user,
            text=body.text,
            visibility=Visibility(body.visibility),
            entry_id=body.entry_id,
            request_key=f"api:{user.id}:{idempotency_key}" if idempotency_key else None,
        )
    except ReplyRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if isinstance(reply, PendingReply):
        response.status_code = status.HTTP_202_ACCEPTED
        return pending_json(reply)
    return reply_json(reply)


class ApproveIn(BaseModel):
    text: str | None = Field(
        default=None, max_length=MAX_REPLY_CHARS, description="the reply as edited; omit to keep"
    )


class ReturnIn(BaseModel):
    comment: str = Field(min_length=1, max_length=2000)


@router.get("/pending")
async def list_pending(request: Request, user: AnyUser) -> dict[str, Any]:
    """Replies waiting for a second approver, oldest first."""
    waiting = await runtime(request).store.pending_replies(awaiting=True)
    return {"pending": [pending_json(p) for p in waiting]}


@router.post("/pending/{pending_id}/approve")
async def approve_pending(
    pending_id: int, body: ApproveIn, request: Request, user: AnyUser
) -> dict[str, Any]:
    """Approve someone else's waiting reply (optionally edited): it is queued for
    delivery. 409 for one's own reply or one no longer waiting."""
    try:
        reply = await approve_waiting(runtime(request), pending_id, user=user, text=body.text)
    except ReplyRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return reply_json(reply)


@router.post("/pending/{pending_id}/return")
async def return_pending(
    pending_id: int, body: ReturnIn, request: Request, user: AnyUser
) -> dict[str, Any]:
    """Send a waiting reply back to its writer with a comment."""
    try:
        await send_back(runtime(request), pending_id, user=user, comment=body.comment)
    except ReplyRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return {"id": pending_id, "status": "returned"}


@router.get("/faq/search")
async def faq_search(
    request: Request,
    user: AnyUser,
    q: Annotated[str, Query(max_length=2000)],
    lang: Annotated[Literal["nl", "fr", "en"] | None, Query()] = None,
    top: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """FAQ entries matching ``q`` among the statuses that may be suggested."""
    hits = await runtime(request).faq.search_async(q[-2000:], top=top, language=lang)
    results = []
    for hit in hits:
        language, answer = hit.entry.answer(lang or hit.language)
        results.append(
            {
                "id": hit.entry.id,
                "entry_id": hit.entry.id,
                "topic": hit.entry.topic,
                "status": hit.entry.status,
                "score": hit.score,
                "why": list(hit.why),
                "variant": hit.variant,
                "language": language,
                "question": hit.entry.question(language),
                "answer": answer,
            }
        )
    return {"query": q, "results": results}


@router.post("/detect")
async def detect(body: DetectIn, request: Request, user: AnyUser) -> dict[str, Any]:
    """Run the detector on a text (nothing is stored)."""
    return detection_json(runtime(request).detector.detect(body.text))

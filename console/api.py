"""The JSON API, /api/v1: the console's own service layer, with the same permissions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from bot.models import (
    Case,
    CaseDetail,
    CaseStatus,
    Detection,
    Reply,
    StoredMessage,
    User,
    Visibility,
)
from console.auth import require, runtime
from console.replies import ReplyRefused, send_reply

router = APIRouter(prefix="/api/v1", tags=["api"])

MAX_REPLY_CHARS = 4000
AnyUser = Annotated[User, Depends(require())]


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_REPLY_CHARS)
    visibility: Literal["public", "private"] = "public"
    entry_id: str | None = Field(default=None, max_length=100)


class DetectIn(BaseModel):
    text: str = Field(max_length=20000)


def case_json(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "status": case.status.value,
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
    status_: Annotated[CaseStatus, Query(alias="status")] = CaseStatus.OPEN,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Cases in one status (default open), urgent first, then oldest first."""
    cases = await runtime(request).store.list_cases(statuses=(status_,), limit=limit)
    return {"cases": [case_json(c) for c in cases]}


@router.get("/cases/{case_id}")
async def get_case(case_id: int, request: Request, user: AnyUser) -> dict[str, Any]:
    """One case with its messages (and their context), suggestions and replies."""
    rt = runtime(request)
    detail = await rt.store.get_case(
        case_id, context_messages=rt.settings.pipeline.context_messages
    )
    return detail_json(detail)


@router.post("/cases/{case_id}/replies", status_code=status.HTTP_201_CREATED)
async def post_reply(
    case_id: int,
    body: ReplyIn,
    request: Request,
    user: AnyUser,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> dict[str, Any]:
    """Approve a reply and queue it for delivery; claims the case if nobody has it.

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
    return reply_json(reply)


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

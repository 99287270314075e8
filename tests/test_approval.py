"""Four-eyes: the policy that sends a reply to a second approver, the waiting reply in the
store, and approving, editing or sending it back through the pages and the API."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta

import httpx
import pytest

from bot.approval import second_approval_reasons, suggests_minor
from bot.models import (
    CaseStatus,
    PendingReply,
    PendingStatus,
    ReplyStatus,
    Role,
    Visibility,
    utcnow,
)
from bot.passwords import new_token, token_hash
from bot.runtime import Runtime
from bot.settings import ApprovalSettings
from bot.store import Conflict, NotFound
from console.replies import ReplyRefused, approve_waiting, send_back, send_reply
from tests.conftest import add_user, flagged_case, login

URGENT = "help mijn vriend wordt niet meer wakker na xtc"


@pytest.mark.parametrize(
    "text",
    [
        "ik ben 15 en wil xtc proberen",
        "j'ai 16 ans, c'est grave si je prends de la md?",
        "im 14 lol is weed bad",
        "I am fifteen and my friends do coke",
        "ik zit in het derde middelbaar",
        "je suis mineure, on peut me vendre de la keta?",
    ],
)
def test_messages_that_suggest_a_minor(text: str) -> None:
    assert suggests_minor(text)


@pytest.mark.parametrize(
    "text",
    [
        "ik ben 15 minuten te laat",
        "j'ai 15 euros pour la soirée",
        "ik ben 25 en wil xtc proberen",
        "we zijn met 15 op het festival",
        "i'm 17 mins away",
    ],
)
def test_messages_that_do_not(text: str) -> None:
    assert not suggests_minor(text)


async def test_the_policy_names_each_reason(runtime: Runtime) -> None:
    rt = runtime
    urgent = await rt.store.get_case(await flagged_case(rt, URGENT))
    calm = await rt.store.get_case(
        await flagged_case(rt, "is xtc met alcohol gevaarlijk? ik ben 16 jaar")
    )
    tags = {"ghb_dosing_timing": ("dosing", "high_risk")}

    def tags_of(entry_id: str) -> tuple[str, ...]:
        return tags.get(entry_id, ())

    on = ApprovalSettings()
    assert "the case is urgent" in second_approval_reasons(
        on, urgent, entry_id=None, tags_of=tags_of
    )
    reasons = second_approval_reasons(on, calm, entry_id="ghb_dosing_timing", tags_of=tags_of)
    assert "the topic ghb_dosing_timing is tagged high_risk" in reasons
    assert "the person may be under 18" in reasons
    off = ApprovalSettings(urgent=False, tags=(), minors=False)
    assert second_approval_reasons(off, urgent, entry_id=None, tags_of=tags_of) == []
    assert second_approval_reasons(off, calm, entry_id="ghb_dosing_timing", tags_of=tags_of) == []


async def test_an_urgent_reply_waits_for_a_second_person(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    wim = await add_user(rt, "wim")
    case_id = await flagged_case(rt, URGENT)
    pending = await send_reply(
        rt,
        case_id,
        user=vera,
        text="Bel 112 en leg hem in stabiele zijligging.",
        visibility=Visibility.PUBLIC,
    )
    assert isinstance(pending, PendingReply) and pending.status is PendingStatus.AWAITING
    assert pending.reasons == ("the case is urgent",)
    detail = await rt.store.get_case(case_id)
    assert detail.replies == () and detail.case.status is CaseStatus.OPEN
    assert detail.case.claimed_by == vera.id  # the writer holds the case meanwhile
    nothing = await rt.store.claim_deliveries(now=utcnow(), lease=timedelta(seconds=30))
    assert [d.item.reply_id for d in nothing if d.item.reply_id] == []  # no reply goes out

    with pytest.raises(ReplyRefused, match="second person"):
        await approve_waiting(rt, pending.id, user=vera)
    with pytest.raises(ReplyRefused, match="already waiting"):
        await send_reply(rt, case_id, user=vera, text="Nog iets", visibility=Visibility.PUBLIC)

    reply = await approve_waiting(
        rt, pending.id, user=wim, text="Bel nu 112 en leg hem in stabiele zijligging."
    )
    assert reply.status is ReplyStatus.QUEUED and reply.approved_by_name == "wim"
    assert reply.written_by == vera.id and reply.text.startswith("Bel nu 112")
    detail = await rt.store.get_case(case_id)
    assert detail.case.status is CaseStatus.ANSWERED and [r.id for r in detail.replies] == [
        reply.id
    ]
    (done,) = await rt.store.pending_replies(case_id=case_id)
    assert done.status is PendingStatus.APPROVED and done.reply_id == reply.id
    with pytest.raises(ReplyRefused, match="approved already"):
        await approve_waiting(rt, pending.id, user=wim)
    actions = [e["action"] for e in await rt.store.audit_events()]
    assert "reply.propose" in actions and "reply.second_approval" in actions


async def test_two_approvers_at_once_make_one_reply(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    a = await add_user(rt, "anna", Role.EXPERT)
    b = await add_user(rt, "bert")
    case_id = await flagged_case(rt, URGENT)
    pending = await send_reply(
        rt, case_id, user=vera, text="Bel 112.", visibility=Visibility.PUBLIC
    )
    results = await asyncio.gather(
        rt.store.approve_pending(pending.id, a.id),
        rt.store.approve_pending(pending.id, b.id),
        return_exceptions=True,
    )
    replies = {r.id for r in results if not isinstance(r, BaseException)}
    assert len(replies) <= 1
    assert len((await rt.store.get_case(case_id)).replies) == 1


async def test_a_reply_sent_back_returns_to_its_writer(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    erik = await add_user(rt, "erik", Role.EXPERT)
    case_id = await flagged_case(rt, URGENT)
    pending = await send_reply(
        rt, case_id, user=vera, text="Wacht af.", visibility=Visibility.PUBLIC
    )
    with pytest.raises(ReplyRefused, match="say what should change"):
        await send_back(rt, pending.id, user=erik, comment="  ")
    with pytest.raises(ReplyRefused, match="second person"):
        await send_back(rt, pending.id, user=vera, comment="hm")
    await send_back(rt, pending.id, user=erik, comment="Zeg eerst: bel 112.")
    (returned,) = await rt.store.pending_replies(case_id=case_id)
    assert returned.status is PendingStatus.RETURNED
    assert (returned.review_comment, returned.reviewed_by_name) == ("Zeg eerst: bel 112.", "erik")
    with pytest.raises(Conflict):
        await rt.store.return_pending(pending.id, erik.id, "again")
    with pytest.raises(NotFound):
        await rt.store.approve_pending(9999, erik.id)
    # The writer tries again; it waits again.
    again = await send_reply(rt, case_id, user=vera, text="Bel 112.", visibility=Visibility.PUBLIC)
    assert isinstance(again, PendingReply) and again.id != pending.id


async def test_a_reply_that_needs_no_second_look_goes_out_at_once(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    case_id = await flagged_case(rt, "is xtc met alcohol gevaarlijk?")
    reply = await send_reply(
        rt, case_id, user=vera, text="Liever niet.", visibility=Visibility.PUBLIC
    )
    assert not isinstance(reply, PendingReply) and reply.status is ReplyStatus.QUEUED


async def test_erasing_a_person_removes_replies_waiting_for_them(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    case_id = await flagged_case(rt, URGENT)
    detail = await rt.store.get_case(case_id)
    await send_reply(rt, case_id, user=vera, text="Bel 112.", visibility=Visibility.PUBLIC)
    await rt.store.erase_person(detail.case.author)
    assert await rt.store.pending_replies() == []


# -- pages and API -----------------------------------------------------------------------


async def test_the_case_page_lets_a_second_person_approve_an_edited_reply(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    await add_user(rt, "erik", Role.EXPERT)
    case_id = await flagged_case(rt, URGENT)
    pending = await send_reply(
        rt, case_id, user=vera, text="Bel 112.", visibility=Visibility.PUBLIC
    )
    csrf = await login(client, "erik")
    page = (await client.get(f"/cases/{case_id}")).text
    assert "Waiting for a second approver" in page and "the case is urgent" in page
    assert f'action="/pending/{pending.id}/approve"' in page
    refused = await client.post(
        f"/pending/{pending.id}/approve", data={"case_id": case_id, "text": "x"}
    )
    assert refused.status_code == 403  # no CSRF token
    done = await client.post(
        f"/pending/{pending.id}/approve",
        data={"case_id": case_id, "text": "Bel nu 112!", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Approved and queued for delivery." in done.text
    (reply,) = (await rt.store.get_case(case_id)).replies
    assert reply.text == "Bel nu 112!" and reply.approved_by_name == "erik"


async def test_the_writer_sees_why_it_waits_and_gets_it_back_with_the_comment(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    await add_user(rt, "vera")
    erik = await add_user(rt, "erik", Role.EXPERT)
    case_id = await flagged_case(rt, URGENT)
    csrf = await login(client, "vera")
    sent = await client.post(
        f"/cases/{case_id}/reply",
        data={"text": "Wacht even af.", "visibility": "public", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Not sent yet: a second approver has to look at it (the case is urgent)" in sent.text
    assert "Someone else has to approve it" in sent.text
    (pending,) = await rt.store.pending_replies(case_id=case_id)
    await send_back(rt, pending.id, user=erik, comment="Zeg eerst: bel 112.")
    page = html.unescape((await client.get(f"/cases/{case_id}")).text)
    assert "Sent back by erik: Zeg eerst: bel 112." in page
    textarea = re.search(r'<textarea id="reply-text"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea is not None and textarea.group(1).strip() == "Wacht even af."


async def test_the_api_answers_202_and_approves_by_another_account(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime

    async def bearer(name: str, role: Role = Role.VOLUNTEER) -> dict[str, str]:
        user = await add_user(rt, name, role)
        token = new_token()
        await rt.store.add_token(user.id, token_hash(token))
        return {"Authorization": f"Bearer {token}"}

    vera, erik = await bearer("vera"), await bearer("erik", Role.EXPERT)
    case_id = await flagged_case(rt, URGENT)
    proposed = await client.post(
        f"/api/v1/cases/{case_id}/replies", json={"text": "Bel 112."}, headers=vera
    )
    assert proposed.status_code == 202
    body = proposed.json()
    assert body["status"] == "awaiting_approval" and body["reasons"] == ["the case is urgent"]
    listed = (await client.get("/api/v1/pending", headers=erik)).json()["pending"]
    assert [p["id"] for p in listed] == [body["id"]]
    own = await client.post(f"/api/v1/pending/{body['id']}/approve", json={}, headers=vera)
    assert own.status_code == 409
    approved = await client.post(
        f"/api/v1/pending/{body['id']}/approve", json={"text": "Bel nu 112."}, headers=erik
    )
    assert approved.status_code == 200 and approved.json()["text"] == "Bel nu 112."
    assert approved.json()["approved_by"] == "erik"
    gone = await client.post(
        f"/api/v1/pending/{body['id']}/return", json={"comment": "x"}, headers=erik
    )
    assert gone.status_code == 409

"""Team notes, escalation to experts, the experts' inbox and answers, FAQ drafts from
answers: store and pages, per role."""

from __future__ import annotations

import html

import httpx
import pytest

from bot.models import NoteKind, Role
from bot.runtime import Runtime
from bot.store import Conflict, NotFound
from tests.conftest import add_user, flagged_case, login


async def test_questions_are_answered_once_and_leave_the_inbox(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    erik = await add_user(rt, "erik", Role.EXPERT)
    case_id = await flagged_case(rt)
    note = await rt.store.add_note(
        case_id, vera.id, NoteKind.NOTE, "Ken deze groep, vaak feestjes."
    )
    question = await rt.store.add_note(
        case_id, vera.id, NoteKind.QUESTION, "Hoe lang na xtc mag je weer drinken?"
    )
    assert [q.id for q in await rt.store.questions()] == [question.id]
    with pytest.raises(ValueError):
        await rt.store.add_note(case_id, vera.id, NoteKind.ANSWER, "x")
    with pytest.raises(NotFound):
        await rt.store.add_note(9999, vera.id, NoteKind.NOTE, "x")
    answer = await rt.store.answer_question(question.id, erik.id, "Minstens een dag; drink water.")
    assert answer.question_id == question.id and answer.author == "erik"
    assert await rt.store.questions() == []
    with pytest.raises(Conflict, match="answered already"):
        await rt.store.answer_question(question.id, erik.id, "nog eens")
    with pytest.raises(NotFound):
        await rt.store.answer_question(note.id, erik.id, "a note is not a question")
    kinds = [n.kind for n in await rt.store.case_notes(case_id)]
    assert kinds == [NoteKind.NOTE, NoteKind.QUESTION, NoteKind.ANSWER]
    assert "case.escalate" in {e["action"] for e in await rt.store.audit_events("case")}


async def test_notes_go_with_the_case_on_erasure(runtime: Runtime) -> None:
    rt = runtime
    vera = await add_user(rt, "vera")
    erik = await add_user(rt, "erik", Role.EXPERT)
    case_id = await flagged_case(rt)
    question = await rt.store.add_note(case_id, vera.id, NoteKind.QUESTION, "Wat nu?")
    await rt.store.answer_question(question.id, erik.id, "Zo.")
    author = (await rt.store.get_case(case_id)).case.author
    await rt.store.erase_person(author)
    assert await rt.store.case_notes(case_id) == []


async def test_a_volunteer_asks_an_expert_answers_and_makes_an_faq_draft(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    await add_user(rt, "vera")
    await add_user(rt, "erik", Role.EXPERT)
    case_id = await flagged_case(rt)
    csrf = await login(client, "vera")
    assert (await client.get("/questions")).status_code == 403
    assert (await client.post(f"/cases/{case_id}/notes", data={"text": "x"})).status_code == 403
    asked = await client.post(
        f"/cases/{case_id}/notes",
        data={
            "text": "Hoe lang na xtc mag je weer <b>drinken</b>?",
            "kind": "question",
            "csrf_token": csrf,
        },
        follow_redirects=True,
    )
    assert "Asked the experts" in asked.text and "waiting for an answer" in asked.text
    assert "&lt;b&gt;drinken&lt;/b&gt;" in asked.text
    noted = await client.post(
        f"/cases/{case_id}/notes",
        data={"text": "Ik volg dit op.", "kind": "note", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Note added" in noted.text and "Ik volg dit op." in noted.text
    bad = await client.post(
        f"/cases/{case_id}/notes", data={"text": "x", "kind": "answer", "csrf_token": csrf}
    )
    assert bad.status_code == 422
    (question,) = await rt.store.questions()
    refused = await client.post(
        f"/questions/{question.id}/answer", data={"text": "ik ben geen expert", "csrf_token": csrf}
    )
    assert refused.status_code == 403
    await client.post("/logout", data={"csrf_token": csrf})

    csrf = await login(client, "erik")
    inbox = html.unescape((await client.get("/questions")).text)
    assert "Hoe lang na xtc mag je weer <b>drinken</b>?" in inbox and f"case #{case_id}" in inbox
    answered = await client.post(
        f"/questions/{question.id}/answer",
        data={"text": "Minstens een dag, en drink water.", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Answer saved" in answered.text and "Minstens een dag" in answered.text
    assert "No open questions." in (await client.get("/questions")).text
    draft = await client.post(
        f"/questions/{question.id}/faq-draft", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert draft.status_code == 200 and "FAQ draft made" in draft.text
    entries = [e for e in await rt.store.faq_entries() if e.id.startswith(f"draft-{question.id}-")]
    (entry,) = entries
    assert entry.status == "draft" and entry.answers["nl"] == "Minstens een dag, en drink water."
    # A second click opens the same draft instead of making another.
    await client.post(f"/questions/{question.id}/faq-draft", data={"csrf_token": csrf})
    assert len([e for e in await rt.store.faq_entries() if e.id.startswith("draft-")]) == 1


async def test_the_one_who_asked_hears_of_the_answer_and_only_they(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    from bot.events import CaseEventKind

    vera = await add_user(runtime, "vera")
    await add_user(runtime, "erik", Role.EXPERT)
    case_id = await flagged_case(runtime)
    csrf = await login(client, "vera")
    await client.post(
        f"/cases/{case_id}/notes",
        data={"text": "Mag dit samen?", "kind": "question", "csrf_token": csrf},
    )
    await client.post("/logout", data={"csrf_token": csrf})
    (question,) = await runtime.store.questions()
    csrf = await login(client, "erik")
    async with runtime.events.subscribe() as heard:
        await client.post(
            f"/questions/{question.id}/answer", data={"text": "Liever niet.", "csrf_token": csrf}
        )
        events = [await heard.get(), await heard.get()]
    kinds = {(e.kind, e.user) for e in events if e is not None}
    assert kinds == {(CaseEventKind.UPDATED, None), (CaseEventKind.EXPERT_ANSWER, vera.id)}
    told = next(e for e in events if e is not None and e.kind is CaseEventKind.EXPERT_ANSWER)
    assert told.as_dict()["user"] == vera.id and told.case_id == case_id

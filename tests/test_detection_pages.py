"""Detection in the console: dismiss with a reason, the playground, the lexicon editor,
through HTTP (pages and API), for each role."""

from __future__ import annotations

import html

import httpx

from bot.models import CaseStatus, DismissReason, Role
from bot.passwords import new_token, token_hash
from bot.runtime import Runtime
from tests.conftest import add_user, flagged_case, login


async def test_a_volunteer_dismisses_a_case_with_a_reason(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    case_id = await flagged_case(runtime)
    page = (await client.get(f"/cases/{case_id}")).text
    for reason in DismissReason:
        assert f'value="{reason.value}"' in page
    without_csrf = await client.post(f"/cases/{case_id}/dismiss", data={"reason": "spam"})
    assert without_csrf.status_code == 403
    unknown = await client.post(
        f"/cases/{case_id}/dismiss", data={"reason": "boring", "csrf_token": csrf}
    )
    assert unknown.status_code == 422
    done = await client.post(
        f"/cases/{case_id}/dismiss",
        data={"reason": "not_drug_related", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "dismissed: not drug-related" in done.text
    detail = await runtime.store.get_case(case_id)
    assert detail.case.status is CaseStatus.DISMISSED
    assert detail.case.dismiss_reason is DismissReason.NOT_DRUG_RELATED
    page = (await client.get(f"/cases/{case_id}")).text
    assert (
        "Dismissed: Not drug-related" in page
        and 'action="/cases/' + str(case_id) + '/dismiss"' not in page
    )
    again = await client.post(
        f"/cases/{case_id}/dismiss",
        data={"reason": "spam", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Not dismissed: this case is dismissed" in again.text


async def test_an_untrained_volunteer_may_not_dismiss(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await runtime.store.add_user("new", "x", Role.VOLUNTEER, trained=False)
    token = new_token()
    await runtime.store.add_token(user.id, token_hash(token))
    case_id = await flagged_case(runtime)
    response = await client.post(
        f"/api/v1/cases/{case_id}/dismiss",
        json={"reason": "spam"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403 and "trained" in response.json()["detail"]
    assert (await runtime.store.get_case(case_id)).case.status is CaseStatus.OPEN


async def test_the_api_dismisses_with_a_reason(runtime: Runtime, client: httpx.AsyncClient) -> None:
    user = await add_user(runtime, "api")
    token = new_token()
    await runtime.store.add_token(user.id, token_hash(token))
    auth = {"Authorization": f"Bearer {token}"}
    case_id = await flagged_case(runtime)
    bad = await client.post(
        f"/api/v1/cases/{case_id}/dismiss", json={"reason": "meh"}, headers=auth
    )
    assert bad.status_code == 422
    done = await client.post(
        f"/api/v1/cases/{case_id}/dismiss", json={"reason": "already_answered"}, headers=auth
    )
    assert done.status_code == 200
    assert done.json()["status"] == "dismissed"
    assert done.json()["dismiss_reason"] == "already_answered"
    conflict = await client.post(
        f"/api/v1/cases/{case_id}/dismiss", json={"reason": "spam"}, headers=auth
    )
    assert conflict.status_code == 409
    (label,) = await runtime.store.feedback_labels()
    assert label.drug_related is True and label.source == "dismissed:already_answered"


async def test_the_playground_explains_a_message_without_storing_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    page = await client.get("/detection")
    assert page.status_code == 200 and "Detection playground" in page.text
    assert "lexicon only" in page.text  # the tests run the lexicon detector
    refused = await client.post("/detection", data={"text": "xtc"})
    assert refused.status_code == 403
    text = "mijn vriend wordt niet meer wakker na xtc en een glas coke zero"
    result = await client.post("/detection", data={"text": text, "csrf_token": csrf})
    body = html.unescape(result.text)
    assert result.status_code == 200 and "URGENT" in body
    assert "xtc" in body and "MDMA / XTC" in body  # the term and its substance
    assert "not counted: next to" in body  # coke set aside: zero
    assert "someone may be in danger" in body
    assert text in body  # the text stays in the box
    assert await runtime.store.list_cases() == []  # nothing stored
    calm = await client.post("/detection", data={"text": "lekker weer vandaag", "csrf_token": csrf})
    assert "NOT FLAGGED" in calm.text
    xss = await client.post(
        "/detection", data={"text": "<script>alert(1)</script> xtc", "csrf_token": csrf}
    )
    assert "<script>alert(1)" not in xss.text and "&lt;script&gt;" in xss.text
    too_long = await client.post("/detection", data={"text": "x" * 8001, "csrf_token": csrf})
    assert too_long.status_code == 422


async def test_only_experts_and_coordinators_edit_the_lexicon(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    assert (await client.get("/lexicon")).status_code == 403
    posted = await client.post(
        "/lexicon",
        data={"kind": "urgent", "term": "x", "source": "me", "csrf_token": csrf},
    )
    assert posted.status_code == 403
    assert await runtime.store.lexicon_edits() == []
    page = (await client.get("/detection")).text
    assert 'href="/lexicon"' not in page


async def test_an_expert_adds_a_term_sees_it_work_and_removes_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "exp", Role.EXPERT)
    csrf = await login(client, "exp")
    page = await client.get("/lexicon")
    assert page.status_code == 200 and "Lexicon" in page.text
    text = "wie heeft er nog blauwkes? hoeveel neem je"
    before = await client.post("/detection", data={"text": text, "csrf_token": csrf})
    assert "NOT FLAGGED" in before.text

    missing_source = await client.post(
        "/lexicon",
        data={
            "kind": "term",
            "term": "blauwkes",
            "substance": "mdma",
            "strength": "strong",
            "csrf_token": csrf,
        },
    )
    assert missing_source.status_code == 422 and "say where it comes from" in missing_source.text
    assert 'value="blauwkes"' in missing_source.text  # what was typed comes back
    no_substance = await client.post(
        "/lexicon",
        data={"kind": "term", "term": "blauwkes", "source": "own", "csrf_token": csrf},
    )
    assert no_substance.status_code == 422 and "choose the substance" in no_substance.text
    no_context = await client.post(
        "/lexicon",
        data={"kind": "false_friend", "term": "blauwkes", "source": "own", "csrf_token": csrf},
    )
    assert no_context.status_code == 422 and "needs the words" in no_context.text

    added = await client.post(
        "/lexicon",
        data={
            "kind": "term",
            "term": "blauwkes",
            "substance": "mdma",
            "strength": "strong",
            "language": "nl",
            "note": "blue pills, Flemish",
            "source": "messages in our channels",
            "licence": "",
            "csrf_token": csrf,
        },
        follow_redirects=True,
    )
    assert added.status_code == 200 and "Added 'blauwkes'" in html.unescape(added.text)
    assert "messages in our channels" in added.text and "blue pills, Flemish" in added.text
    after = await client.post("/detection", data={"text": text, "csrf_token": csrf})
    assert "FLAGGED" in after.text and "NOT FLAGGED" not in after.text

    (edit,) = await runtime.store.lexicon_edits()
    removed = await client.post(
        f"/lexicon/{edit.id}/remove", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Removed" in removed.text
    again = await client.post("/detection", data={"text": text, "csrf_token": csrf})
    assert "NOT FLAGGED" in again.text
    audit = {e["action"] for e in await runtime.store.audit_events("lexicon_edit")}
    assert audit == {"lexicon.add", "lexicon.remove"}
    assert (
        await client.post(f"/lexicon/{edit.id}/remove", data={"csrf_token": csrf})
    ).status_code == 404

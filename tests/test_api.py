"""The JSON API through HTTP (in-process ASGI), with bearer tokens and session cookies."""

from __future__ import annotations

import asyncio
import json

import httpx

from bot.models import OutboxStatus, Role
from bot.passwords import new_token, token_hash
from bot.runtime import Runtime
from tests.conftest import add_user, flagged_case, login
from tests.fakes import message


async def _bearer(
    rt: Runtime, username: str = "vol", role: Role = Role.VOLUNTEER
) -> dict[str, str]:
    user = await add_user(rt, username, role)
    token = new_token()
    await rt.store.add_token(user.id, token_hash(token))
    return {"Authorization": f"Bearer {token}"}


async def test_api_needs_authentication(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/cases", "/api/v1/cases/1", "/api/v1/faq/search?q=xtc"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    bad = await client.get("/api/v1/cases", headers={"Authorization": "Bearer pd_nope"})
    assert bad.status_code == 401


async def test_cases_list_and_detail(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    case_id = await flagged_case(runtime)
    listing = (await client.get("/api/v1/cases", headers=auth)).json()
    assert [c["id"] for c in listing["cases"]] == [case_id]
    case = listing["cases"][0]
    assert {r["term"] for r in case["reasons"]} >= {"xtc", "alcohol"}
    assert case["status"] == "open" and case["urgent"] is False
    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth)).json()
    assert [m["text"] for m in detail["messages"]] == ["is xtc met alcohol gevaarlijk?"]
    assert detail["suggestions"][0]["entry_id"] == "combo_mdma_alcohol"
    assert detail["suggestions"][0]["answer"]
    assert detail["replies"] == []
    missing = await client.get("/api/v1/cases/9999", headers=auth)
    assert missing.status_code == 404


async def test_posting_a_reply_approves_queues_and_claims(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    auth = await _bearer(runtime)
    case_id = await flagged_case(runtime)
    response = await client.post(
        f"/api/v1/cases/{case_id}/replies",
        json={"text": "Liever niet samen: beide drogen je uit.", "visibility": "public"},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    reply = response.json()
    assert (reply["status"], reply["approved_by"], reply["visibility"]) == (
        "queued",
        "vol",
        "public",
    )
    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth)).json()
    assert (detail["status"], detail["claimed_by"]) == ("answered", "vol")
    assert [r["id"] for r in detail["replies"]] == [reply["id"]]
    outbox = [i for i in await runtime.store.outbox_items() if i.reply_id == reply["id"]]
    assert [i.status for i in outbox] == [OutboxStatus.PENDING]
    assert runtime.outbox.wakeup.is_set()
    # Someone else cannot answer a case that is claimed.
    other = await _bearer(runtime, "other")
    refused = await client.post(
        f"/api/v1/cases/{case_id}/replies", json={"text": "me too"}, headers=other
    )
    assert refused.status_code == 409 and "claimed by vol" in refused.json()["detail"]


async def test_reply_input_is_validated(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    case_id = await flagged_case(runtime)
    for body in ({"text": ""}, {"text": "x" * 4001}, {"text": "ok", "visibility": "loud"}, {}):
        response = await client.post(f"/api/v1/cases/{case_id}/replies", json=body, headers=auth)
        assert response.status_code == 422, body
    blank = await client.post(
        f"/api/v1/cases/{case_id}/replies", json={"text": "   "}, headers=auth
    )
    assert blank.status_code == 409
    assert await runtime.store.outbox_items() != []  # only the opt-in notice
    assert all(i.reply_id is None for i in await runtime.store.outbox_items())


async def test_session_callers_need_the_csrf_header(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    case_id = await flagged_case(runtime)
    listing = await client.get("/api/v1/cases")
    assert listing.status_code == 200
    refused = await client.post(f"/api/v1/cases/{case_id}/replies", json={"text": "hi"})
    assert refused.status_code == 403
    accepted = await client.post(
        f"/api/v1/cases/{case_id}/replies", json={"text": "hi"}, headers={"X-CSRF-Token": csrf}
    )
    assert accepted.status_code == 201


async def test_faq_search(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    response = await client.get(
        "/api/v1/faq/search",
        params={"q": "whippets r they safe?", "lang": "fr", "top": 2},
        headers=auth,
    )
    body = response.json()
    assert response.status_code == 200
    assert len(body["results"]) <= 2
    first = body["results"][0]
    assert (first["entry_id"], first["language"]) == ("nitrous_oxide_risks", "fr")
    assert "whippets" in first["why"]
    bad = await client.get("/api/v1/faq/search", params={"q": "x", "top": 0}, headers=auth)
    assert bad.status_code == 422


async def test_detect(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    urgent = await client.post(
        "/api/v1/detect", json={"text": "mijn vriend ademt niet meer na G"}, headers=auth
    )
    assert urgent.json()["urgent"] is True and urgent.json()["language"] == "nl"
    calm = await client.post("/api/v1/detect", json={"text": "glas coke zero"}, headers=auth)
    assert calm.json()["flagged"] is False
    assert [r["kind"] for r in calm.json()["reasons"]] == ["context"]
    assert await runtime.store.list_cases() == []  # detect stores nothing


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {
        "/api/v1/cases",
        "/api/v1/cases/{case_id}",
        "/api/v1/cases/{case_id}/replies",
        "/api/v1/faq/search",
        "/api/v1/detect",
        "/healthz",
    } <= set(spec["paths"])
    assert not any(p.startswith(("/login", "/queue")) for p in spec["paths"])


async def test_a_retried_call_with_the_same_key_sends_one_reply(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    auth = await _bearer(runtime)
    case_id = await flagged_case(runtime)
    headers = {**auth, "Idempotency-Key": "retry-1"}
    first = await client.post(
        f"/api/v1/cases/{case_id}/replies", json={"text": "hi"}, headers=headers
    )
    again = await client.post(
        f"/api/v1/cases/{case_id}/replies", json={"text": "hi"}, headers=headers
    )
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    replies = [i for i in await runtime.store.outbox_items() if i.reply_id is not None]
    assert len(replies) == 1


async def test_two_volunteers_answering_at_once_send_one_reply(runtime: Runtime) -> None:
    import asyncio

    from bot.models import Visibility
    from console.replies import ReplyRefused, send_reply

    case_id = await flagged_case(runtime)
    a = await add_user(runtime, "a")
    b = await add_user(runtime, "b")
    results = await asyncio.gather(
        *(
            send_reply(
                runtime, case_id, user=u, text=f"from {u.username}", visibility=Visibility.PUBLIC
            )
            for u in (a, b)
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ReplyRefused)]
    assert len(refused) == 1 and "claimed by" in str(refused[0])
    assert len((await runtime.store.get_case(case_id)).replies) == 1


async def test_untrained_volunteers_cannot_answer(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await runtime.store.add_user("new", "x", Role.VOLUNTEER, trained=False)
    token = new_token()
    await runtime.store.add_token(user.id, token_hash(token))
    case_id = await flagged_case(runtime)
    response = await client.post(
        f"/api/v1/cases/{case_id}/replies",
        json={"text": "hi"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 409 and "trained" in response.json()["detail"]
    assert (await runtime.store.get_case(case_id)).replies == ()


async def test_a_private_reply_that_cannot_be_delivered_is_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    from tests.fakes import FakeAdapter

    auth = await _bearer(runtime)
    case_id = await flagged_case(runtime)
    body = {"text": "Privé: drink water.", "visibility": "private"}
    runtime.adapters["fake"] = FakeAdapter(private=False)
    refused = await client.post(f"/api/v1/cases/{case_id}/replies", json=body, headers=auth)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "no private message: private messages are not possible on this platform"
    )
    assert all(i.reply_id is None for i in await runtime.store.outbox_items())
    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth)).json()
    assert (detail["status"], detail["claimed_by"], detail["replies"]) == ("open", None, [])

    runtime.adapters["fake"] = FakeAdapter()  # a platform that can
    accepted = await client.post(f"/api/v1/cases/{case_id}/replies", json=body, headers=auth)
    assert accepted.status_code == 201 and accepted.json()["visibility"] == "private"
    (queued,) = [i for i in await runtime.store.outbox_items() if i.reply_id is not None]
    assert queued.recipient == runtime.pipeline.pseudonymize("fake", "user-1")


async def test_queue_filters_in_the_api(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    calm = await flagged_case(runtime)
    urgent = await runtime.pipeline.ingest(
        message("mijn vriend wordt niet wakker na G", "u1", author="other")
    )
    assert urgent is not None and urgent.case_id is not None

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/api/v1/cases?{query}", headers=auth)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["cases"]]

    assert await ids("") == [urgent.case_id, calm]
    assert await ids("urgency=urgent") == [urgent.case_id]
    assert await ids("urgency=normal&language=nl&platform=fake") == [calm]
    assert await ids("language=fr") == []
    assert await ids("mine=true") == []
    assert await ids("status=all") == [urgent.case_id, calm]
    for wrong in ("status=closed", "urgency=very", "language=de", "channel=x", "mine=maybe"):
        assert (await client.get(f"/api/v1/cases?{wrong}", headers=auth)).status_code == 422


async def test_claims_through_the_api_per_role(runtime: Runtime, client: httpx.AsyncClient) -> None:
    ann = await _bearer(runtime, "ann")
    bob = await _bearer(runtime, "bob")
    expert = await _bearer(runtime, "exp", Role.EXPERT)
    cora = await _bearer(runtime, "cora", Role.COORDINATOR)
    new = await runtime.store.add_user("new", "h", Role.VOLUNTEER, trained=False)
    token = new_token()
    await runtime.store.add_token(new.id, token_hash(token))
    untrained = {"Authorization": f"Bearer {token}"}
    case_id = await flagged_case(runtime)
    url = f"/api/v1/cases/{case_id}/claim"

    refused = await client.post(url, headers=untrained)
    assert refused.status_code == 403 and "trained" in refused.json()["detail"]
    claimed = await client.post(url, headers=ann)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "ann"
    assert (await client.post(url, headers=ann)).status_code == 200  # renews
    taken = await client.post(url, headers=bob)
    assert taken.status_code == 409 and taken.json()["detail"] == "this case is claimed by ann"
    assert (await client.post(url, headers=expert)).status_code == 409
    assert (await client.delete(url, headers=bob)).status_code == 409
    released = await client.delete(url, headers=ann)
    assert released.status_code == 200 and released.json()["claimed_by"] is None
    assert (await client.post(url, headers=expert)).json()["claimed_by"] == "exp"

    assign = f"/api/v1/cases/{case_id}/assignee"
    bob_id = (await runtime.store.user_credentials("bob"))[0].id  # type: ignore[index]
    for who in (ann, bob, expert):
        assert (await client.put(assign, json={"user_id": bob_id}, headers=who)).status_code == 403
    given = await client.put(assign, json={"user_id": bob_id}, headers=cora)
    assert given.status_code == 200 and given.json()["claimed_by"] == "bob"
    to_new = await client.put(assign, json={"user_id": new.id}, headers=cora)
    assert to_new.status_code == 409 and "not trained" in to_new.json()["detail"]
    nobody = await client.put(assign, json={"user_id": None}, headers=cora)
    assert nobody.json()["claimed_by"] is None
    assert (await client.post("/api/v1/cases/999/claim", headers=ann)).status_code == 404


async def test_api_claims_with_a_session_need_the_csrf_header(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await add_user(runtime, "cora", Role.COORDINATOR)
    csrf = await login(client, "cora")
    case_id = await flagged_case(runtime)
    calls = [
        ("POST", f"/api/v1/cases/{case_id}/claim", None),
        ("DELETE", f"/api/v1/cases/{case_id}/claim", None),
        ("PUT", f"/api/v1/cases/{case_id}/assignee", {"user_id": user.id}),
        ("PUT", "/api/v1/me/duty", {"on_duty": True}),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body)
        assert response.status_code == 403, path
    ok = await client.post(f"/api/v1/cases/{case_id}/claim", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200


async def test_going_on_duty_through_the_api(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    response = await client.put("/api/v1/me/duty", json={"on_duty": True}, headers=auth)
    assert response.json() == {"username": "vol", "on_duty": True}
    user = await runtime.store.user_credentials("vol")
    assert user is not None and user[0].on_duty


async def test_events_stream_case_changes(runtime: Runtime, client: httpx.AsyncClient) -> None:
    auth = await _bearer(runtime)
    assert (await client.get("/api/v1/events")).status_code == 401
    # The in-process transport hands over a response once it is complete: listen in a
    # task, change cases, then close the broadcaster (as at shutdown) to end the stream.
    listening = asyncio.create_task(client.get("/api/v1/events", headers=auth))
    for _ in range(200):
        if runtime.events.subscribers:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    case_id = await flagged_case(runtime)
    await client.post(f"/api/v1/cases/{case_id}/claim", headers=auth)
    runtime.events.close()
    response = await asyncio.wait_for(listening, 10)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("retry: 3000\n\n")
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert [(e["kind"], e["case"]) for e in events] == [("opened", case_id), ("claimed", case_id)]
    assert "event: case\n" in response.text

"""People (coordinators): the accounts list, invitations by one-time link, role, training
and deactivation, with the audit log; in-process HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from bot import invites, people
from bot import schema as t
from bot.models import Role, User, utcnow
from bot.passwords import new_token, token_hash
from bot.runtime import Runtime
from console.app import create_app
from tests.conftest import CSRF_RE, add_user, flagged_case, login

LINK_RE = re.compile(r'id="invite-link"[^>]*value="(http://console\.test/invite/([^"]+))"')
NEW_PASSWORD = "a long new password"


@asynccontextmanager
async def browser(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Another person's browser: its own cookies, the same console."""
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
        yield c


async def _coordinator(rt: Runtime, client: httpx.AsyncClient) -> tuple[User, str]:
    cora = await add_user(rt, "cora", Role.COORDINATOR)
    return cora, await login(client, "cora")


async def _invite(
    client: httpx.AsyncClient, csrf: str, role: str = "volunteer", trained: bool = False
) -> tuple[str, str]:
    """Create an invitation through the page; returns (link, token)."""
    data = {"role": role, "csrf_token": csrf}
    if trained:
        data["trained"] = "1"
    page = await client.post("/people/invite", data=data)
    assert page.status_code == 200, page.text
    found = LINK_RE.search(page.text)
    assert found is not None, page.text
    return found.group(1), found.group(2)


async def _accept(
    client: httpx.AsyncClient,
    token: str,
    username: str,
    password: str = NEW_PASSWORD,
    again: str | None = None,
) -> httpx.Response:
    form = await client.get(f"/invite/{token}")
    assert form.status_code == 200, form.text
    csrf = CSRF_RE.search(form.text)
    assert csrf is not None
    return await client.post(
        f"/invite/{token}",
        data={
            "username": username,
            "password": password,
            "password_again": password if again is None else again,
            "csrf_token": csrf.group(1),
        },
    )


async def test_only_coordinators_see_people(runtime: Runtime, client: httpx.AsyncClient) -> None:
    assert (await client.get("/people")).headers["location"] == "/login"
    await add_user(runtime, "vera")
    await add_user(runtime, "ed", Role.EXPERT)
    for name in ("vera", "ed"):
        async with browser(runtime) as other:
            csrf = await login(other, name)
            assert (await other.get("/people")).status_code == 403
            refused = await other.post("/people/invite", data={"csrf_token": csrf})
            assert refused.status_code == 403
            assert (await other.get("/api/v1/people")).status_code == 403
    assert await invites.open_invites(runtime.store) == []


async def test_the_list_shows_role_training_activity_duty_and_last_login(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    vera = await add_user(runtime, "vera")
    await runtime.store.add_user("una", "x", Role.VOLUNTEER, trained=False)
    await runtime.store.set_on_duty(vera.id, True)
    cora, _ = await _coordinator(runtime, client)
    page = await client.get("/people")
    assert page.status_code == 200
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(
            r'<tr data-user-id="\d+".*?>\s*<th scope="row"[^>]*>(\w+).*?</tr>', page.text, re.S
        )
    }
    assert set(rows) == {"cora", "vera", "una"}
    assert "(you)" in rows["cora"] and "Deactivate" not in rows["cora"]
    assert 'value="expert"' not in rows["cora"]  # no role form for oneself
    # cora just logged in; vera never did.
    today = utcnow().strftime("%Y-%m-%d")
    assert today in rows["cora"] and "never" in rows["vera"]
    assert "Mark trained" in rows["una"] and "Unmark" in rows["vera"]
    on_duty = re.search(r'data-label="On duty">(\w+)<', rows["vera"])
    assert on_duty is not None and on_duty.group(1) == "yes"
    assert (await people.person(runtime.store, cora.id)).last_login_at is not None


async def test_an_invitee_chooses_a_name_and_password_and_logs_in(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    cora, csrf = await _coordinator(runtime, client)
    link, token = await _invite(client, csrf, role="expert", trained=True)
    assert link.startswith("http://console.test/invite/") and len(token) >= 40
    # Only the token's hash is stored, nowhere the token itself.
    async with runtime.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.invites))).one()
        audit = (await conn.execute(sa.select(t.audit_events))).all()
    assert row.token_hash == token_hash(token) and token not in str(row)
    assert token not in str(audit)
    listed = await client.get("/people")
    assert token not in listed.text and "Invitations not used yet" in listed.text

    async with browser(runtime) as newcomer:
        form = await newcomer.get(f"/invite/{token}")
        assert "You are invited to join the team as expert." in form.text
        done = await _accept(newcomer, token, "nora")
        assert (done.status_code, done.headers["location"]) == (303, "/login")
        welcome = await newcomer.get("/login")
        assert "Welcome, nora: your account is ready." in welcome.text
        await login(newcomer, "nora", NEW_PASSWORD)
        assert (await newcomer.get("/questions")).status_code == 200  # an expert's page

    nora = await runtime.store.user_credentials("nora")
    assert nora is not None and (nora[0].role, nora[0].trained) == (Role.EXPERT, True)
    # Used once: the link now says so, and a second account cannot be made with it.
    async with browser(runtime) as someone:
        again = await someone.get(f"/invite/{token}")
        assert again.status_code == 410
        assert (
            "has been used already" in again.text and "<form" not in again.text.split("<main>")[1]
        )
    assert await invites.open_invites(runtime.store) == []
    actions = [
        (e["action"], e["actor"])
        for e in await runtime.store.audit_events()
        if e["action"] in ("invite.create", "user.add")
    ]
    assert actions[-2:] == [("invite.create", cora.id), ("user.add", nora[0].id)]


async def test_expired_withdrawn_and_unknown_links_say_so(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, csrf = await _coordinator(runtime, client)
    _, expired = await _invite(client, csrf)
    _, withdrawn = await _invite(client, csrf)
    async with runtime.store.engine.begin() as conn:
        await conn.execute(
            t.invites.update()
            .where(t.invites.c.token_hash == token_hash(expired))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    found = await invites.find(runtime.store, withdrawn)
    assert found is not None
    revoke = await client.post(f"/people/invites/{found.id}/revoke", data={"csrf_token": csrf})
    assert revoke.status_code == 303
    assert "Invitation withdrawn" in (await client.get("/people")).text

    async with browser(runtime) as anyone:
        for token, code, words in (
            (expired, 410, "this invitation link has expired"),
            (withdrawn, 410, "this invitation was withdrawn"),
            ("made-up-token", 404, "this invitation link is not valid"),
        ):
            page = await anyone.get(f"/invite/{token}")
            assert (page.status_code, words in page.text) == (code, True), token
            # Posting to it makes nothing either.
            csrf_anyone = CSRF_RE.search(page.text)
            assert csrf_anyone is not None
            posted = await anyone.post(
                f"/invite/{token}",
                data={
                    "username": "sneaky",
                    "password": NEW_PASSWORD,
                    "password_again": NEW_PASSWORD,
                    "csrf_token": csrf_anyone.group(1),
                },
            )
            assert posted.status_code == code
    assert await runtime.store.user_credentials("sneaky") is None


async def test_the_invite_form_refuses_bad_choices_and_keeps_the_link(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, csrf = await _coordinator(runtime, client)
    await add_user(runtime, "Vera")
    _, token = await _invite(client, csrf)
    async with browser(runtime) as newcomer:
        for username, password, again, code, words in (
            ("nora", "short", None, 422, "at least 8 characters"),
            ("nora", NEW_PASSWORD, "something else", 422, "the two passwords differ"),
            ("no ra", NEW_PASSWORD, None, 422, "no spaces"),
            ("vera", NEW_PASSWORD, None, 409, "that username is taken"),
            ("<b>x</b>", NEW_PASSWORD, None, 422, "letters, digits"),
        ):
            page = await _accept(newcomer, token, username, password, again)
            assert (page.status_code, words in page.text) == (code, True), username
            assert "<b>x</b>" not in page.text  # what was typed comes back escaped
        # No CSRF token: refused before anything happens.
        no_token = await newcomer.post(
            f"/invite/{token}",
            data={"username": "nora", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
        )
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        assert len(await invites.open_invites(runtime.store)) == 1
        assert (await _accept(newcomer, token, "nora")).status_code == 303
    assert (await people.people(runtime.store))[-1].username in {"nora", "Vera", "cora"}
    assert await runtime.store.user_credentials("nora") is not None


async def test_two_people_using_one_link_at_once_get_one_account(runtime: Runtime) -> None:
    cora = await add_user(runtime, "cora", Role.COORDINATOR)
    token, _ = await invites.create(
        runtime.store, role=Role.VOLUNTEER, trained=False, by=cora.id, hours=1
    )
    import asyncio

    results = await asyncio.gather(
        invites.accept(runtime.store, token, username="ann", password_hash="h1"),
        invites.accept(runtime.store, token, username="bob", password_hash="h2"),
        return_exceptions=True,
    )
    made = [r for r in results if isinstance(r, User)]
    refused = [r for r in results if isinstance(r, invites.InviteError)]
    assert (len(made), len(refused)) == (1, 1)
    assert refused[0].state == "used"


async def test_role_training_and_activity_changes_are_audited(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    vera = await add_user(runtime, "vera")
    cora, csrf = await _coordinator(runtime, client)
    for path, data, flash in (
        ("role", {"role": "expert"}, "vera is now expert."),
        ("trained", {"trained": "0"}, "vera is not marked trained."),
        ("active", {"active": "0"}, "vera is deactivated"),
        ("active", {"active": "1"}, "vera can log in again."),
    ):
        done = await client.post(f"/people/{vera.id}/{path}", data={**data, "csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/people"
        assert flash in (await client.get("/people")).text
    now = await people.person(runtime.store, vera.id)
    assert (now.role, now.trained, now.active) == (Role.EXPERT, False, True)
    events = [
        (e["action"], e["actor"], e["object_id"], e["details"])
        for e in await runtime.store.audit_events("user")
        if e["actor"] == cora.id and e["action"] != "token.create"
    ]
    assert events == [
        ("user.role", cora.id, str(vera.id), {"from": "volunteer", "to": "expert"}),
        ("user.trained", cora.id, str(vera.id), {"trained": False}),
        ("user.deactivate", cora.id, str(vera.id), {"tokens": 0, "claims": 0}),
        ("user.activate", cora.id, str(vera.id), {}),
    ]
    bad = await client.post(f"/people/{vera.id}/role", data={"role": "boss", "csrf_token": csrf})
    assert bad.status_code == 422
    missing = await client.post("/people/99999/trained", data={"trained": "1", "csrf_token": csrf})
    assert missing.status_code == 404


async def test_a_coordinator_cannot_demote_or_deactivate_themselves(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    cora, csrf = await _coordinator(runtime, client)
    for path, data in (("role", {"role": "volunteer"}), ("active", {"active": "0"})):
        refused = await client.post(f"/people/{cora.id}/{path}", data={**data, "csrf_token": csrf})
        assert refused.status_code == 303
        assert "Not changed: you cannot" in (await client.get("/people")).text
    me = await people.person(runtime.store, cora.id)
    assert (me.role, me.active) == (Role.COORDINATOR, True)
    # Another coordinator may.
    other = await add_user(runtime, "otto", Role.COORDINATOR)
    await people.set_role(runtime.store, cora.id, Role.EXPERT, by=other)
    assert (await people.person(runtime.store, cora.id)).role is Role.EXPERT


async def test_deactivating_ends_sessions_tokens_duty_and_claims(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    vera = await add_user(runtime, "vera")
    token = new_token()
    await runtime.store.add_token(vera.id, token_hash(token))
    case_id = await flagged_case(runtime)
    await runtime.store.claim_case(
        case_id, vera.id, max_claims=3, lapsed_before=utcnow() - timedelta(hours=1)
    )
    await runtime.store.set_on_duty(vera.id, True)
    _, csrf = await _coordinator(runtime, client)
    bearer = {"authorization": f"Bearer {token}"}
    async with browser(runtime) as hers:
        await login(hers, "vera")
        assert (await hers.get("/api/v1/cases", headers=bearer)).status_code == 200
        off = await client.post(
            f"/people/{vera.id}/active", data={"active": "0", "csrf_token": csrf}
        )
        assert off.status_code == 303
        assert (await hers.get("/queue")).headers.get("location") == "/login"
        assert (await hers.get("/api/v1/cases", headers=bearer)).status_code == 401
        # Reactivated: the old session and the token stay dead; a new login works.
        on = await client.post(
            f"/people/{vera.id}/active", data={"active": "1", "csrf_token": csrf}
        )
        assert on.status_code == 303
        cookies = dict(hers.cookies)
    async with browser(runtime) as replay:
        replay.cookies.update(cookies)
        assert (await replay.get("/queue")).headers.get("location") == "/login"
        assert (await replay.get("/api/v1/cases", headers=bearer)).status_code == 401
        await login(replay, "vera")
        assert (await replay.get("/queue")).status_code == 200
    detail = await runtime.store.get_case(case_id)
    assert detail.case.claimed_by is None
    assert (await people.person(runtime.store, vera.id)).on_duty is False
    deactivation = [
        e for e in await runtime.store.audit_events("user") if e["action"] == "user.deactivate"
    ]
    assert deactivation[-1]["details"] == {"tokens": 1, "claims": 1}


async def test_the_api(runtime: Runtime, client: httpx.AsyncClient) -> None:
    cora = await add_user(runtime, "cora", Role.COORDINATOR)
    vera = await add_user(runtime, "vera")
    token = new_token()
    await runtime.store.add_token(cora.id, token_hash(token))
    auth = {"authorization": f"Bearer {token}"}
    listed = (await client.get("/api/v1/people", headers=auth)).json()
    assert {p["username"]: p["role"] for p in listed["people"]} == {
        "cora": "coordinator",
        "vera": "volunteer",
    }
    changed = await client.patch(
        f"/api/v1/people/{vera.id}", json={"role": "expert", "trained": False}, headers=auth
    )
    assert changed.status_code == 200
    assert (changed.json()["role"], changed.json()["trained"]) == ("expert", False)
    self_demote = await client.patch(
        f"/api/v1/people/{cora.id}", json={"role": "volunteer"}, headers=auth
    )
    assert self_demote.status_code == 409
    assert (await people.person(runtime.store, cora.id)).role is Role.COORDINATOR
    made = await client.post(
        "/api/v1/invites", json={"role": "volunteer", "trained": True}, headers=auth
    )
    assert made.status_code == 201
    url = made.json()["url"]
    assert url.startswith("http://console.test/invite/")
    assert made.json()["invite"]["state"] == "open"
    listed = (await client.get("/api/v1/people", headers=auth)).json()
    assert [i["trained"] for i in listed["invites"]] == [True]
    opened = await client.get(url.removeprefix("http://console.test"))
    assert "as volunteer" in opened.text


@pytest.mark.parametrize("hours", [1, 72])
async def test_invitations_last_the_setting_s_hours(runtime: Runtime, hours: int) -> None:
    cora = await add_user(runtime, "cora", Role.COORDINATOR)
    _, made = await invites.create(
        runtime.store, role=Role.VOLUNTEER, trained=False, by=cora.id, hours=hours
    )
    assert made.expires_at - made.created_at == timedelta(hours=hours)
    assert runtime.settings.console.invite_hours == 72

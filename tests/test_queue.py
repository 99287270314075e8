"""The queue page, its filters and live list, claims and on-duty, per role, through HTTP."""

from __future__ import annotations

import re

import httpx
import pytest

from bot.models import Role
from bot.runtime import Runtime
from tests.conftest import PASSWORD, add_user, flagged_case, login
from tests.fakes import channel, message, opt_in
from tests.test_pages import parse


def _case_rows(html: str) -> list[str]:
    doc = parse(html)
    return [
        a["data-case-id"] or "" for tag, a in doc.elements if tag == "tr" and "data-case-id" in a
    ]


def _actions(html: str) -> set[str]:
    """The form actions on a page."""
    return {a["action"] or "" for tag, a in parse(html).elements if tag == "form"}


async def _urgent_case(rt: Runtime) -> int:
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(
        message("mijn vriend wordt niet wakker na G", "u1", author="other")
    )
    assert result is not None and result.case_id is not None
    return result.case_id


async def test_queue_filters_narrow_the_list(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    calm = await flagged_case(runtime)
    urgent = await _urgent_case(runtime)
    french = channel("chat-fr", language="fr")
    await runtime.pipeline.opt_in(opt_in(french))
    fr = await runtime.pipeline.ingest(
        message("on peut mélanger coke et alcool?", "f1", chat=french)
    )
    assert fr is not None and fr.case_id is not None
    assert _case_rows((await client.get("/queue")).text) == [
        str(urgent),
        str(calm),
        str(fr.case_id),
    ]
    assert _case_rows((await client.get("/queue?urgency=urgent")).text) == [str(urgent)]
    assert _case_rows((await client.get("/queue?urgency=normal&language=fr")).text) == [
        str(fr.case_id)
    ]
    channels = await runtime.store.list_channels()
    fr_id = next(c.id for c in channels if c.chat_id == "chat-fr")
    page = await client.get(f"/queue?channel={fr_id}&platform=fake")
    assert _case_rows(page.text) == [str(fr.case_id)]
    assert f'<option value="{fr_id}" selected>' in page.text  # the form shows the filter
    assert _case_rows((await client.get("/queue?platform=telegram")).text) == []
    assert _case_rows((await client.get("/queue?mine=1")).text) == []
    await client.post(f"/cases/{calm}/claim", data={"csrf_token": csrf})
    assert _case_rows((await client.get("/queue?mine=1")).text) == [str(calm)]
    assert _case_rows((await client.get("/queue?status=answered")).text) == []
    assert len(_case_rows((await client.get("/queue?status=all")).text)) == 3
    for wrong in ("status=closed", "urgency=very", "language=de", "channel=x", "mine=maybe"):
        response = await client.get(f"/queue?{wrong}", headers={"accept": "text/html"})
        assert response.status_code == 422, wrong
        assert wrong.split("=")[0] in response.text


async def test_topic_and_substance_filters(runtime: Runtime, client: httpx.AsyncClient) -> None:
    """A topic keeps the cases with a suggestion on it; a substance, those with a message
    naming it; the page and the API agree."""
    await add_user(runtime, "vol")
    await login(client, "vol")
    ids = []
    for n, text in enumerate(
        (
            "is xtc met alcohol gevaarlijk?",
            "mijn vriend wordt niet wakker na G",
            "on peut mélanger coke et alcool?",
        )
    ):
        chat = channel(f"chat-{n}")  # a channel each, so no case takes in another's message
        await runtime.pipeline.opt_in(opt_in(chat))
        result = await runtime.pipeline.ingest(message(text, f"m{n}", chat=chat))
        assert result is not None and result.case_id is not None
        ids.append(result.case_id)
    assert len(set(ids)) == 3
    details = {i: await runtime.store.get_case(i) for i in ids}
    named = {
        i: {s for m in d.messages if m.case_id == i for s in m.substances}
        for i, d in details.items()
    }
    topics = {i: {s.topic for s in d.suggestions} for i, d in details.items()}
    assert "ghb" in named[ids[1]] and "cocaine" in named[ids[2]]
    for key, having in (("substance", named), ("topic", topics)):
        values = set().union(*having.values())
        assert values, key
        for value in sorted(values):
            expected = sorted(str(i) for i in ids if value in having[i])
            page = await client.get(f"/queue?{key}={value}")
            assert sorted(_case_rows(page.text)) == expected, (key, value)
            assert f'<option value="{value}" selected>' in page.text
            api = (await client.get(f"/api/v1/cases?{key}={value}")).json()["cases"]
            assert sorted(str(c["id"]) for c in api) == expected, (key, value)
    # The filters narrow, they do not just echo the queue.
    ghb = (await client.get("/queue?substance=ghb")).text
    assert _case_rows(ghb) == [str(ids[1])]
    assert _case_rows((await client.get("/queue?substance=nosuchthing")).text) == []
    for wrong in ("topic=Bad%20Topic", "substance=%25"):
        response = await client.get(f"/queue?{wrong}", headers={"accept": "text/html"})
        assert response.status_code == 422, wrong
        assert (await client.get(f"/api/v1/cases?{wrong}")).status_code == 422


async def test_the_live_list_is_the_queue_without_the_page(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    page = await client.get("/queue?urgency=urgent")
    assert 'data-rows-url="/queue/rows?urgency=urgent"' in page.text
    assert '<script src="/static/live.js" defer></script>' in page.text
    assert 'data-live="/api/v1/events"' in page.text
    rows = await client.get("/queue/rows?urgency=urgent")
    assert "<html" not in rows.text and "0 cases" in rows.text
    urgent = await _urgent_case(runtime)
    await flagged_case(runtime)
    assert _case_rows((await client.get("/queue/rows?urgency=urgent")).text) == [str(urgent)]
    script = await client.get("/static/live.js")
    assert script.status_code == 200 and "EventSource" in script.text
    client.cookies.clear()
    assert (await client.get("/queue/rows")).status_code in (303, 307)


async def test_a_trained_volunteer_claims_and_releases(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    case_id = await flagged_case(runtime)
    queue = (await client.get("/queue")).text
    assert f"/cases/{case_id}/claim" in _actions(queue) and "free" in queue
    response = await client.post(
        f"/cases/{case_id}/claim", data={"csrf_token": csrf, "next": "/queue?urgency=normal"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/queue?urgency=normal"
    queue = (await client.get("/queue")).text
    assert f"You have case #{case_id}" in queue and ">You<" in queue
    assert f"/cases/{case_id}/release" in _actions(queue)
    case_page = (await client.get(f"/cases/{case_id}")).text
    assert "You have this case" in case_page
    released = await client.post(
        f"/cases/{case_id}/release", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert released.url.path == f"/cases/{case_id}"
    assert "free for others again" in released.text and "Nobody has claimed" in released.text
    again = await client.post(
        f"/cases/{case_id}/release", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Not released: nobody holds this case" in again.text


async def test_a_claimed_case_shows_who_has_it_to_the_others(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "ann")
    await add_user(runtime, "bob")
    case_id = await flagged_case(runtime)
    csrf = await login(client, "ann")
    await client.post(f"/cases/{case_id}/claim", data={"csrf_token": csrf})
    client.cookies.clear()
    csrf = await login(client, "bob")
    queue = (await client.get("/queue")).text
    assert ">ann<" in queue and f"/cases/{case_id}/claim" not in _actions(queue)
    page = await client.get(f"/cases/{case_id}")
    assert "ann</strong> has this case" in page.text
    taken = await client.post(
        f"/cases/{case_id}/claim", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Not claimed: this case is claimed by ann." in taken.text
    stolen = await client.post(
        f"/cases/{case_id}/release", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Not released: this case is claimed by ann." in stolen.text
    sent = await client.post(
        f"/cases/{case_id}/reply", data={"csrf_token": csrf, "text": "hi", "visibility": "public"}
    )
    assert sent.status_code == 409 and "claimed by ann" in sent.text


async def test_an_untrained_volunteer_may_not_claim(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await runtime.store.add_user("new", _hash(), Role.VOLUNTEER, trained=False)
    csrf = await login(client, "new")
    case_id = await flagged_case(runtime)
    queue = (await client.get("/queue")).text
    assert f"/cases/{case_id}/claim" not in _actions(queue)
    page = (await client.get(f"/cases/{case_id}")).text
    assert "Only trained volunteers claim" in page
    refused = await client.post(
        f"/cases/{case_id}/claim", data={"csrf_token": csrf}, headers={"accept": "text/html"}
    )
    assert refused.status_code == 403 and "only trained volunteers" in refused.text
    assert (await runtime.store.get_case(case_id)).case.claimed_by is None


async def test_claims_are_limited_per_person(runtime: Runtime, client: httpx.AsyncClient) -> None:
    runtime.settings = _with(runtime, max_claims=1)
    await add_user(runtime, "vol", Role.EXPERT)  # experts claim too, within the same limit
    csrf = await login(client, "vol")
    first = await flagged_case(runtime)
    second = await _urgent_case(runtime)
    await client.post(f"/cases/{first}/claim", data={"csrf_token": csrf})
    refused = await client.post(
        f"/cases/{second}/claim", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Not claimed: you already hold 1 open cases" in refused.text


async def test_a_coordinator_reassigns(runtime: Runtime, client: httpx.AsyncClient) -> None:
    ann = await add_user(runtime, "ann")
    await runtime.store.add_user("new", _hash(), Role.VOLUNTEER, trained=False)
    await add_user(runtime, "cora", Role.COORDINATOR)
    case_id = await flagged_case(runtime)
    csrf = await login(client, "cora")
    page = (await client.get(f"/cases/{case_id}")).text
    assert f"/cases/{case_id}/assign" in _actions(page)
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page)
    assert "new (volunteer)" not in [label for _, label in options]  # untrained: not offered
    given = await client.post(
        f"/cases/{case_id}/assign",
        data={"csrf_token": csrf, "assignee": str(ann.id)},
        follow_redirects=True,
    )
    assert f"Case #{case_id} is now with ann." in given.text
    assert (await runtime.store.get_case(case_id)).case.claimed_by == ann.id
    new = await runtime.store.user_credentials("new")
    assert new is not None
    refused = await client.post(
        f"/cases/{case_id}/assign",
        data={"csrf_token": csrf, "assignee": str(new[0].id)},
        follow_redirects=True,
    )
    assert "Not reassigned: new is not trained to take cases." in refused.text
    await client.post(f"/cases/{case_id}/assign", data={"csrf_token": csrf, "assignee": ""})
    assert (await runtime.store.get_case(case_id)).case.claimed_by is None


@pytest.mark.parametrize("role", [Role.VOLUNTEER, Role.EXPERT])
async def test_only_coordinators_reassign(
    runtime: Runtime, client: httpx.AsyncClient, role: Role
) -> None:
    user = await add_user(runtime, "someone", role)
    csrf = await login(client, "someone")
    case_id = await flagged_case(runtime)
    assert f"/cases/{case_id}/assign" not in _actions((await client.get(f"/cases/{case_id}")).text)
    refused = await client.post(
        f"/cases/{case_id}/assign", data={"csrf_token": csrf, "assignee": str(user.id)}
    )
    assert refused.status_code == 403
    assert (await runtime.store.get_case(case_id)).case.claimed_by is None


async def test_every_new_form_needs_the_csrf_token(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await add_user(runtime, "cora", Role.COORDINATOR)
    csrf = await login(client, "cora")
    case_id = await flagged_case(runtime)
    forms = {
        f"/cases/{case_id}/claim": {},
        f"/cases/{case_id}/release": {},
        f"/cases/{case_id}/assign": {"assignee": str(user.id)},
        "/duty": {"on_duty": "1"},
    }
    for path, data in forms.items():
        for token in (None, "wrong"):
            sent = dict(data, csrf_token=token) if token else data
            response = await client.post(path, data=sent)
            assert response.status_code == 403, path
    case = (await runtime.store.get_case(case_id)).case
    assert case.claimed_by is None
    assert not (await runtime.store.get_user(user.id)).on_duty  # type: ignore[union-attr]
    assert (
        await client.post("/duty", data={"csrf_token": csrf, "on_duty": "1"})
    ).status_code == 303


async def test_going_on_and_off_duty(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    queue = (await client.get("/queue")).text
    assert 'data-on-duty="false"' in queue and "Go on duty" in queue
    on = await client.post(
        "/duty", data={"csrf_token": csrf, "on_duty": "1", "next": "https://evil.example/"}
    )
    assert on.headers["location"] == "/queue"  # only a path on this site
    queue = (await client.get("/queue")).text
    assert 'data-on-duty="true"' in queue and "You are on duty" in queue
    assert "Go off duty" in queue
    await client.post("/duty", data={"csrf_token": csrf, "on_duty": "0"})
    assert 'data-on-duty="false"' in (await client.get("/queue")).text


async def test_pages_need_a_login(client: httpx.AsyncClient) -> None:
    for path in ("/queue", "/queue/rows"):
        response = await client.get(path, follow_redirects=True)
        assert response.url.path == "/login"
    for path in ("/cases/1/claim", "/cases/1/release", "/cases/1/assign", "/duty"):
        response = await client.post(path, follow_redirects=True)
        assert response.url.path == "/login"


def _hash() -> str:
    from bot.passwords import hash_password

    return hash_password(PASSWORD)


def _with(rt: Runtime, **console: int) -> object:
    from dataclasses import replace

    return replace(rt.settings, console=replace(rt.settings.console, **console))

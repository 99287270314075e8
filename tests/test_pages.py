"""The console's pages through HTTP, parsed as HTML."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import httpx

from bot.models import (
    CaseStatus,
    ChannelRef,
    DismissReason,
    MessageDeletion,
    MessageEdit,
    Role,
    Visibility,
)
from bot.runtime import Runtime
from tests.conftest import CSRF_RE, add_user, flagged_case, login
from tests.fakes import FakeAdapter, channel, message, opt_in


class _Text(HTMLParser):
    """Collects visible text and the attributes of elements, to assert on parsed HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def parse(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


async def test_pages_redirect_to_login(client: httpx.AsyncClient) -> None:
    for path in ("/", "/queue", "/cases/1"):
        response = await client.get(path, follow_redirects=True)
        assert response.url.path == "/login"
    assert (await client.get("/login")).status_code == 200


async def test_login_rejects_wrong_password_and_csrf(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    page = await client.get("/login")
    token = CSRF_RE.search(page.text)
    assert token is not None
    no_csrf = await client.post("/login", data={"username": "vol", "password": "x"})
    assert no_csrf.status_code == 403
    wrong = await client.post(
        "/login", data={"username": "vol", "password": "nope", "csrf_token": token.group(1)}
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    unknown = await client.post(
        "/login", data={"username": "ghost", "password": "nope", "csrf_token": token.group(1)}
    )
    assert unknown.status_code == 401


async def test_login_is_throttled(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_user(runtime, "vol")
    token = CSRF_RE.search((await client.get("/login")).text)
    assert token is not None
    codes = []
    for _ in range(6):
        response = await client.post(
            "/login", data={"username": "vol", "password": "bad", "csrf_token": token.group(1)}
        )
        codes.append(response.status_code)
    assert codes == [401] * 5 + [429]
    right = await client.post(
        "/login",
        data={"username": "vol", "password": "correct horse battery", "csrf_token": token.group(1)},
    )
    assert right.status_code == 429  # even the right password waits out the lockout


async def test_queue_shows_cases_with_reasons_urgent_first(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    calm = await flagged_case(runtime, "is xtc met alcohol gevaarlijk?")
    urgent_result = await runtime.pipeline.ingest(
        message("mijn vriend wordt niet wakker na G", "u1", author="other")
    )
    assert urgent_result is not None and urgent_result.case_id is not None
    page = await client.get("/queue")
    doc = parse(page.text)
    rows = [a["data-case-id"] for tag, a in doc.elements if tag == "tr" and "data-case-id" in a]
    assert rows == [str(urgent_result.case_id), str(calm)]
    assert "URGENT" in doc.text and "xtc" in doc.text and "wordt niet wakker" in doc.text


async def test_chat_text_is_escaped(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    case_id = await flagged_case(
        runtime, 'xtc? <script>alert("x")</script><img src=x onerror=alert(1)>'
    )
    for path in ("/queue", f"/cases/{case_id}"):
        page = (await client.get(path)).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;" in page
    assert "script-src 'self'" in (await client.get("/queue")).headers["content-security-policy"]


async def test_case_page_prefills_a_chosen_suggestion_and_sends(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    case_id = await flagged_case(runtime)
    page = await client.get(f"/cases/{case_id}")
    assert page.status_code == 200
    uses = re.findall(r'href="(/cases/\d+\?use=[^"#]+)', page.text)
    assert uses, "each suggestion offers 'use this answer'"
    chosen = await client.get(uses[0])
    textarea = re.search(r'<textarea id="reply-text"[^>]*>(.*?)</textarea>', chosen.text, re.S)
    assert textarea is not None and textarea.group(1).strip()
    detail = await runtime.store.get_case(case_id)
    assert html.unescape(textarea.group(1)).strip() == detail.suggestions[0].answer.strip()

    refused = await client.post(f"/cases/{case_id}/reply", data={"text": "hoi"})
    assert refused.status_code == 403
    sent = await client.post(
        f"/cases/{case_id}/reply",
        data={
            "text": "Hoi! Liever niet mixen.",
            "visibility": "public",
            "csrf_token": csrf,
            "entry_id": "combo_mdma_alcohol",
        },
        follow_redirects=True,
    )
    assert sent.status_code == 200
    assert "Reply approved and queued" in sent.text and "Hoi! Liever niet mixen." in sent.text
    (reply,) = (await runtime.store.get_case(case_id)).replies
    assert (reply.text, reply.approved_by_name) == ("Hoi! Liever niet mixen.", "vol")


async def test_refused_reply_keeps_the_draft(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_user(runtime, "first")
    other = await add_user(runtime, "second")
    case_id = await flagged_case(runtime)
    await runtime.store.approve_reply(
        case_id,
        text="mine",
        visibility=Visibility.PUBLIC,
        written_by=other.id,
        approved_by=other.id,
    )
    csrf = await login(client, "first")
    response = await client.post(
        f"/cases/{case_id}/reply",
        data={"text": "my careful draft", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Not sent: this case is claimed by second" in response.text
    assert "my careful draft" in response.text


async def test_unknown_case_and_demo_page_give_404(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    missing = await client.get("/cases/4242", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "no case 4242" in missing.text
    assert (await client.get("/demo", headers={"accept": "text/html"})).status_code == 404


async def test_logout_ends_the_session(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    response = await client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert (await client.get("/queue")).headers["location"] == "/login"


async def test_sending_the_same_form_twice_sends_one_reply(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    case_id = await flagged_case(runtime)
    page = (await client.get(f"/cases/{case_id}")).text
    key = re.search(r'name="reply_key" value="([^"]+)"', page)
    assert key is not None
    form = {"text": "Eén keer!", "csrf_token": csrf, "reply_key": key.group(1)}
    for _ in range(2):
        response = await client.post(f"/cases/{case_id}/reply", data=form)
        assert response.status_code == 303
    assert [r.text for r in (await runtime.store.get_case(case_id)).replies] == ["Eén keer!"]


def _private_option(doc: _Text) -> dict[str, str | None] | None:
    options = [a for tag, a in doc.elements if tag == "input" and a.get("value") == "private"]
    assert len(options) <= 1
    return options[0] if options else None


async def test_private_option_follows_what_the_platform_allows(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    case_id = await flagged_case(runtime)

    cases = [
        (None, "Private message not possible: the fake connection is not running."),
        (
            FakeAdapter(private=False),
            "Private message not possible: private messages are not possible on this platform.",
        ),
    ]
    for adapter, reason in cases:
        if adapter is not None:
            runtime.adapters["fake"] = adapter
        doc = parse((await client.get(f"/cases/{case_id}")).text)
        option = _private_option(doc)
        assert option is not None and "disabled" in option
        assert option.get("aria-describedby") == "private-why"
        assert reason in doc.text

    runtime.adapters["fake"] = FakeAdapter()
    doc = parse((await client.get(f"/cases/{case_id}")).text)
    option = _private_option(doc)
    assert option is not None and "disabled" not in option
    assert not any("Private message not possible" in line for line in doc.text)
    assert "Reply in the channel" in doc.text

    # Without a kept platform address (the person erased it, say) nothing can reach them.
    import sqlalchemy as sa

    from bot import schema

    async with runtime.store.engine.begin() as conn:
        await conn.execute(sa.delete(schema.contacts))
    doc = parse((await client.get(f"/cases/{case_id}")).text)
    assert "Private message not possible: no private address is kept for this person." in doc.text


async def test_a_direct_chat_case_is_answered_in_that_chat(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    runtime.adapters["fake"] = FakeAdapter()
    dm = ChannelRef(platform="fake", chat_id="dm-1", title="Private chat", kind="direct")
    result = await runtime.pipeline.ingest(message("hoi, mag ik iets vragen?", "1", chat=dm))
    assert result is not None and result.case_id is not None
    doc = parse((await client.get(f"/cases/{result.case_id}")).text)
    assert any(line.startswith("Reply in the private chat") for line in doc.text)
    assert "Reply in the channel" not in doc.text
    assert _private_option(doc) is None


async def test_deleted_and_edited_messages_are_shown_as_such(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    await runtime.pipeline.opt_in(opt_in())
    first = await runtime.pipeline.ingest(message("geheimpje: is xtc met alcohol ok?", "1"))
    await runtime.pipeline.ingest(message("en met speed?", "2"))
    assert first is not None and first.case_id is not None
    await runtime.pipeline.edit(MessageEdit(channel=channel(), message_id="2", text="en 2cb?"))
    await runtime.pipeline.delete(MessageDeletion(channel=channel(), message_id="1"))
    page = (await client.get(f"/cases/{first.case_id}")).text
    doc = parse(page)
    assert "Deleted by its author on the platform." in doc.text
    assert "geheimpje" not in page
    assert "en 2cb?" in doc.text and "en met speed?" not in page
    assert any(line.endswith("ago · edited") for line in doc.text)


async def test_a_private_reply_that_cannot_be_delivered_is_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    case_id = await flagged_case(runtime)
    runtime.adapters["fake"] = FakeAdapter(private=False)
    before = await runtime.store.outbox_items()
    response = await client.post(
        f"/cases/{case_id}/reply",
        data={"text": "Privé: drink water.", "visibility": "private", "csrf_token": csrf},
    )
    assert response.status_code == 409
    assert (
        "Not sent: no private message: private messages are not possible on this platform."
        in parse(response.text).text
    )
    assert "Privé: drink water." in html.unescape(response.text)  # the draft is kept
    assert await runtime.store.outbox_items() == before
    detail = await runtime.store.get_case(case_id)
    assert (detail.replies, detail.case.status, detail.case.claimed_by) == (
        (),
        CaseStatus.OPEN,
        None,
    )


async def test_a_coordinator_erases_the_person_behind_a_case(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    case_id = await flagged_case(runtime, "is xtc met alcohol gevaarlijk? WISMIJ")
    author = (await runtime.store.get_case(case_id)).case.author
    await add_user(runtime, "vol")
    csrf = await login(client, "vol")
    page = (await client.get(f"/cases/{case_id}")).text
    assert "erase-author" not in page  # volunteers do not get the button
    forbidden = await client.post(
        f"/cases/{case_id}/erase-author", data={"confirm": "yes", "csrf_token": csrf}
    )
    assert forbidden.status_code == 403
    await client.post("/logout", data={"csrf_token": csrf})

    coordinator = await add_user(runtime, "coco", Role.COORDINATOR)
    csrf = await login(client, "coco")
    assert "Erase everything about this person" in (await client.get(f"/cases/{case_id}")).text
    unconfirmed = await client.post(
        f"/cases/{case_id}/erase-author", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "tick the box to confirm" in unconfirmed.text
    assert (await runtime.store.get_case(case_id)).case.author == author
    done = await client.post(
        f"/cases/{case_id}/erase-author",
        data={"confirm": "yes", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert "Erased: 1 messages and 1 cases" in done.text
    left = await runtime.store.person_data(author)
    assert left["messages"] == [] and left["cases"] == []
    (event,) = [e for e in await runtime.store.audit_events("person")]
    assert event["actor"] == coordinator.id and author not in str(event)


async def test_the_case_page_shows_combinations_and_earlier_cases(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    rt = runtime
    vol = await add_user(rt, "vol")
    await login(client, "vol")
    first = await flagged_case(rt, "is xtc met alcohol gevaarlijk?")
    await rt.store.approve_reply(
        first,
        text="Liever niet.",
        visibility=Visibility.PUBLIC,
        written_by=vol.id,
        approved_by=vol.id,
    )
    second = await flagged_case(rt, "en wiet met lsd, hoeveel mag dat?")
    page = html.unescape((await client.get(f"/cases/{first}")).text)
    assert "mdma + alcohol" in page and 'href="/faq/combo_mdma_alcohol"' in page
    page = html.unescape((await client.get(f"/cases/{second}")).text)
    assert "cannabis + psychedelics" in page or "psychedelics + cannabis" in page
    assert "no FAQ entry covers this combination" in page
    assert "Earlier cases of this person" in page and f'href="/cases/{first}"' in page
    await rt.store.dismiss_case(second, vol.id, DismissReason.NOT_OUR_JOB)
    calm = await flagged_case(rt, "hoeveel mdma is te veel?")
    assert calm != second
    assert "Combination" not in (await client.get(f"/cases/{calm}")).text

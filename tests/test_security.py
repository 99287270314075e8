"""Console and API security, generated from the app's own routes (issue 7).

- Every route (every method, the webhook and the static mount included) is requested as
  each of five people: anonymous, an untrained volunteer, a volunteer, an expert and a
  coordinator, with real ids in the path. :data:`RULES` says who gets past the role
  check; a route without a rule fails the suite.
- Every state-changing route refuses a logged-in session without the CSRF token or with a
  wrong one, and takes a bearer-token call without it.
- Security headers on every HTML page, the session cookie's flags, a new session at
  login, and no configured secret in any response or log line, errors included.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import shutil
import traceback
import uuid
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from bot import invites
from bot.logs import RedactSecrets, settings_secrets
from bot.models import PendingReply, Role, User, Visibility
from bot.passwords import new_token, token_hash
from bot.runtime import Runtime, build_runtime
from bot.store import Store
from console.app import SECURITY_HEADERS, create_app
from console.auth import LoginThrottle
from console.replies import send_reply
from tests.conftest import CSRF_RE, PASSWORD, make_settings
from tests.fakes import channel, message, opt_in

ANON = "anonymous"
UNTRAINED = "untrained volunteer"
VOLUNTEER = "volunteer"
EXPERT = "expert"
COORDINATOR = "coordinator"
ROLES = (ANON, UNTRAINED, VOLUNTEER, EXPERT, COORDINATOR)

EVERYONE = frozenset(ROLES)
LOGGED_IN = EVERYONE - {ANON}
TRAINED = frozenset({VOLUNTEER, EXPERT, COORDINATOR})
EXPERTS = frozenset({EXPERT, COORDINATOR})
COORDINATORS = frozenset({COORDINATOR})

WEBHOOK_PATH = "/telegram/hook"
WEBHOOK_SECRET = "webhook-secret-Value_0123456789"
TELEGRAM_TOKEN = "123456789:AAH-telegramSecretTokenValue0123456789"
CONSOLE_KEY = "console-secret-key-value-0123456789abcdef"
PSEUDONYM_KEY = "pseudonym-key-value-0123456789abcdef"
DB_PASSWORD = "DbPassw0rd-secret-value-42"

#: Who gets past the role check of each route, by (method, path as declared). Say why
#: when it is not the obvious one. A 2xx, 3xx (not to /login), 404, 409 or 422 counts as
#: "got in"; 401, 403 or a redirect to /login as "kept out".
RULES: dict[tuple[str, str], frozenset[str] | str] = {
    # Public: the login form, health for load balancers, the API description, assets.
    ("GET", "/"): EVERYONE,  # a redirect to /queue, which then asks for a login
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): "login",  # its own CSRF check, and credentials: a wrong password
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/openapi.json"): EVERYONE,  # describes the API; holds no data
    ("HEAD", "/openapi.json"): EVERYONE,
    ("MOUNT", "/static"): EVERYONE,
    ("POST", WEBHOOK_PATH): "webhook",  # Telegram's own secret header, no session
    # Everyone on the team.
    # Logging out answers with the login page whoever asks; it ends the session of those
    # who had one (checked in the matrix).
    ("POST", "/logout"): "logout",
    # The language switch takes anyone with the session's CSRF token (the login page has
    # it too); the matrix's anonymous client has no token, so it is refused with 403.
    ("POST", "/language"): LOGGED_IN,
    ("GET", "/queue"): LOGGED_IN,
    ("GET", "/queue/rows"): LOGGED_IN,
    ("POST", "/duty"): LOGGED_IN,
    ("GET", "/account"): LOGGED_IN,
    ("POST", "/account/code"): LOGGED_IN,
    ("POST", "/account/unlink"): LOGGED_IN,
    ("GET", "/cases/{case_id}"): LOGGED_IN,
    # The claim rules (console/claims.py) refuse an untrained volunteer with 403.
    ("POST", "/cases/{case_id}/claim"): TRAINED,
    # Releasing what one does not hold is a 303 with a message, for anyone.
    ("POST", "/cases/{case_id}/release"): LOGGED_IN,
    ("POST", "/cases/{case_id}/assign"): COORDINATORS,
    # An untrained volunteer's reply is refused by console/replies.py (409, nothing
    # stored); so are their approvals and returns of waiting replies (303 with a message).
    ("POST", "/cases/{case_id}/reply"): LOGGED_IN,
    ("POST", "/pending/{pending_id}/approve"): LOGGED_IN,
    ("POST", "/pending/{pending_id}/return"): LOGGED_IN,
    ("POST", "/cases/{case_id}/dismiss"): LOGGED_IN,  # untrained: 303 "Not dismissed"
    ("POST", "/cases/{case_id}/erase-author"): COORDINATORS,
    ("POST", "/cases/{case_id}/notes"): LOGGED_IN,  # internal notes, questions to experts
    ("GET", "/questions"): EXPERTS,  # the experts' inbox
    ("GET", "/answers"): LOGGED_IN,  # the answers history, for everyone on the team
    ("POST", "/questions/{question_id}/answer"): EXPERTS,
    ("POST", "/questions/{question_id}/faq-draft"): EXPERTS,
    ("GET", "/demo"): LOGGED_IN,  # 404 outside demo mode
    ("GET", "/faq"): LOGGED_IN,
    ("GET", "/faq/{entry_id}"): LOGGED_IN,
    ("GET", "/faq/{entry_id}/diff"): LOGGED_IN,
    ("GET", "/faq/{entry_id}/edit"): EXPERTS,
    ("POST", "/faq/{entry_id}/edit"): EXPERTS,
    ("POST", "/faq/{entry_id}/status"): EXPERTS,
    ("GET", "/detection"): LOGGED_IN,
    ("POST", "/detection"): LOGGED_IN,
    ("GET", "/lexicon"): EXPERTS,
    ("POST", "/lexicon"): EXPERTS,
    ("POST", "/lexicon/{edit_id}/remove"): EXPERTS,
    # Figures for funders and the audit trail: coordinators; signals (anonymous counts)
    # for experts too.
    ("GET", "/reports"): COORDINATORS,
    ("GET", "/reports.csv"): COORDINATORS,
    ("GET", "/signals"): EXPERTS,
    ("GET", "/audit"): COORDINATORS,
    # Accounts and channels: coordinators. An invitation link is public (the token in it
    # is the key); its form has its own CSRF check, like the login form's.
    ("GET", "/people"): COORDINATORS,
    ("POST", "/people/invite"): COORDINATORS,
    ("POST", "/people/invites/{invite_id}/revoke"): COORDINATORS,
    ("POST", "/people/{user_id}/role"): COORDINATORS,
    ("POST", "/people/{user_id}/trained"): COORDINATORS,
    ("POST", "/people/{user_id}/active"): COORDINATORS,
    ("GET", "/invite/{token}"): EVERYONE,
    ("POST", "/invite/{token}"): "invite",
    ("GET", "/channels"): COORDINATORS,
    ("POST", "/channels/{channel_id}/watch"): COORDINATORS,
    ("POST", "/channels/{channel_id}/settings"): COORDINATORS,
    # The API: the same people as the pages.
    ("GET", "/api/v1/cases"): LOGGED_IN,
    ("GET", "/api/v1/cases/{case_id}"): LOGGED_IN,
    ("POST", "/api/v1/cases/{case_id}/claim"): TRAINED,
    ("DELETE", "/api/v1/cases/{case_id}/claim"): LOGGED_IN,  # 409 when not one's own
    ("PUT", "/api/v1/cases/{case_id}/assignee"): COORDINATORS,
    ("POST", "/api/v1/cases/{case_id}/dismiss"): TRAINED,
    ("PUT", "/api/v1/me/duty"): LOGGED_IN,
    ("GET", "/api/v1/events"): LOGGED_IN,
    ("POST", "/api/v1/cases/{case_id}/replies"): LOGGED_IN,  # untrained: 409, not sent
    ("GET", "/api/v1/pending"): LOGGED_IN,
    ("POST", "/api/v1/pending/{pending_id}/approve"): LOGGED_IN,  # untrained: 409
    ("POST", "/api/v1/pending/{pending_id}/return"): LOGGED_IN,  # untrained: 409
    ("GET", "/api/v1/faq/search"): LOGGED_IN,
    ("GET", "/api/v1/reports"): COORDINATORS,
    ("GET", "/api/v1/people"): COORDINATORS,
    ("PATCH", "/api/v1/people/{user_id}"): COORDINATORS,
    ("POST", "/api/v1/invites"): COORDINATORS,
    ("GET", "/api/v1/channels"): COORDINATORS,
    ("PATCH", "/api/v1/channels/{channel_id}"): COORDINATORS,
    ("POST", "/api/v1/detect"): LOGGED_IN,
}

#: What each request sends besides the path: JSON for the API, a form for pages,
#: query parameters for some GETs. Values are realistic so that who gets in reaches
#: the route's own logic.
FORMS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/login"): {"data": {"username": "volunteer", "password": "wrong password"}},
    ("POST", "/duty"): {"data": {"on_duty": "0", "next": "/queue"}},
    ("POST", "/account/unlink"): {"data": {"platform": "telegram"}},
    ("POST", "/cases/{case_id}/claim"): {"data": {"next": "/queue"}},
    ("POST", "/cases/{case_id}/release"): {"data": {"next": "/queue"}},
    ("POST", "/cases/{case_id}/assign"): {"data": {"assignee": ""}},
    ("POST", "/cases/{case_id}/reply"): {"data": {"text": "Take care, drink water."}},
    ("POST", "/pending/{pending_id}/approve"): {"data": {"case_id": "{case_id}"}},
    ("POST", "/pending/{pending_id}/return"): {
        "data": {"case_id": "{case_id}", "comment": "Softer, please."}
    },
    ("POST", "/cases/{case_id}/dismiss"): {"data": {"reason": "spam"}},
    ("POST", "/cases/{case_id}/erase-author"): {"data": {}},  # unconfirmed: nothing erased
    ("POST", "/cases/{case_id}/notes"): {"data": {"text": "Seen this before?"}},
    ("POST", "/questions/{question_id}/answer"): {"data": {"text": "Yes: see the FAQ."}},
    ("GET", "/faq/{entry_id}/diff"): {"params": {"old": "1", "new": "1"}},
    ("POST", "/faq/{entry_id}/edit"): {"data": {"revision": "0"}},  # stale: 422, no save
    ("POST", "/faq/{entry_id}/status"): {"data": {"status": "draft", "revision": "0"}},
    ("POST", "/detection"): {"data": {"text": "is xtc gevaarlijk"}},
    ("POST", "/lexicon"): {"data": {"kind": "term", "term": ""}},  # refused: 422
    ("POST", "/api/v1/cases/{case_id}/replies"): {"json": {"text": "Take care."}},
    ("PUT", "/api/v1/cases/{case_id}/assignee"): {"json": {"user_id": None}},
    ("POST", "/api/v1/cases/{case_id}/dismiss"): {"json": {"reason": "spam"}},
    ("PUT", "/api/v1/me/duty"): {"json": {"on_duty": False}},
    ("POST", "/api/v1/pending/{pending_id}/approve"): {"json": {}},
    ("POST", "/api/v1/pending/{pending_id}/return"): {"json": {"comment": "Softer."}},
    ("GET", "/api/v1/faq/search"): {"params": {"q": "xtc en alcohol"}},
    ("POST", "/api/v1/detect"): {"json": {"text": "is xtc gevaarlijk"}},
    ("POST", WEBHOOK_PATH): {"content": b"{}"},
    ("POST", "/logout"): {"data": {}},
    ("POST", "/people/invite"): {"data": {"role": "volunteer"}},
    ("POST", "/people/{user_id}/role"): {"data": {"role": "expert"}},
    ("POST", "/people/{user_id}/trained"): {"data": {"trained": "1"}},
    ("POST", "/people/{user_id}/active"): {"data": {"active": "0"}},
    ("POST", "/invite/{token}"): {
        "data": {"username": "newcomer", "password": PASSWORD, "password_again": PASSWORD}
    },
    ("POST", "/channels/{channel_id}/watch"): {"data": {"paused": "1"}},
    ("POST", "/channels/{channel_id}/settings"): {"data": {"language": "fr"}},
    ("PATCH", "/api/v1/people/{user_id}"): {"json": {"trained": False}},
    ("POST", "/api/v1/invites"): {"json": {"role": "volunteer"}},
    ("PATCH", "/api/v1/channels/{channel_id}"): {"json": {"paused": True}},
    ("POST", "/language"): {"data": {"language": "en", "next": "/queue"}},
}

#: Test accounts get a real argon2id hash, verified by the real code, with low cost
#: parameters: the suite logs in dozens of times.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
URGENT = "help mijn vriend wordt niet meer wakker na xtc"


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) for every route of the app as it serves them; ("MOUNT", path)
    for mounted apps (the static files)."""
    try:  # FastAPI ≥ 0.130 keeps included routers whole; this walks into them.
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover
        routes = list(app.routes)
    found = []
    for route in routes:
        methods = route.methods
        if methods is None:
            found.append(("MOUNT", route.path))
        else:
            found.extend((method, route.path) for method in sorted(methods))
    return found


# -- the world the requests run in ----------------------------------------------------------


def secured_settings(tmp_path: Path, **env: str) -> Any:
    return make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'peerdesk.db'}",
        PEERDESK_TELEGRAM_TOKEN=TELEGRAM_TOKEN,
        PEERDESK_TELEGRAM_MODE="webhook",
        PEERDESK_TELEGRAM_WEBHOOK_URL="https://desk.example.org",
        PEERDESK_TELEGRAM_WEBHOOK_PATH=WEBHOOK_PATH,
        PEERDESK_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        PEERDESK_CONSOLE_SECRET_KEY=CONSOLE_KEY,
        PEERDESK_PRIVACY_PSEUDONYM_KEY=PSEUDONYM_KEY,
        **env,
    )


@pytest.fixture
async def secured(tmp_path: Path, seeded_sqlite: Path) -> AsyncIterator[Runtime]:
    """A runtime with every secret set and Telegram in webhook mode (so the console
    serves a webhook route), on a copy of the seeded SQLite store."""
    for suffix in ("", "-wal", "-shm"):
        source = seeded_sqlite.with_name(seeded_sqlite.name + suffix)
        if source.exists():
            shutil.copyfile(source, tmp_path / ("peerdesk.db" + suffix))
    rt = await build_runtime(secured_settings(tmp_path))
    try:
        yield rt
    finally:
        await rt.close()


class World:
    """An app, a logged-in client per role, bearer tokens, and fresh objects on demand."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.app = create_app(rt)
        # Wrong passwords are part of these tests; the throttle is tested elsewhere.
        self.app.state.login_throttle = LoginThrottle(max_failures=10_000)
        self.users: dict[str, User] = {}
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.csrf: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.entry_id = ""

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://console.test")

    async def login(self, role: str) -> tuple[httpx.AsyncClient, str]:
        client = self.client()
        if role == ANON:
            return client, ""
        page = await client.get("/login")
        found = CSRF_RE.search(page.text)
        assert found is not None
        response = await client.post(
            "/login",
            data={
                "username": self.users[role].username,
                "password": PASSWORD,
                "csrf_token": found.group(1),
            },
        )
        assert response.status_code == 303, response.text
        queue = await client.get("/queue")
        found = CSRF_RE.search(queue.text)
        assert found is not None
        return client, found.group(1)

    async def setup(self) -> None:
        store = self.rt.store
        accounts = {
            UNTRAINED: (Role.VOLUNTEER, False),
            VOLUNTEER: (Role.VOLUNTEER, True),
            EXPERT: (Role.EXPERT, True),
            COORDINATOR: (Role.COORDINATOR, True),
        }
        digest = CHEAP_HASHER.hash(PASSWORD)
        for role, (kind, trained) in accounts.items():
            name = role.replace(" ", "_")
            self.users[role] = await store.add_user(name, digest, kind, trained=trained)
            token = new_token()
            await store.add_token(self.users[role].id, token_hash(token))
            self.tokens[role] = token
        self.writer = await store.add_user("writer", digest, Role.VOLUNTEER)
        for role in ROLES:
            self.clients[role], self.csrf[role] = await self.login(role)
        self.entry_id = (await store.faq_entries())[0].id
        await self.rt.pipeline.opt_in(opt_in())

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def new_case(self, text: str = "is xtc met alcohol gevaarlijk?") -> int:
        """A case of its own (a new author: it does not join an earlier one)."""
        result = await self.rt.pipeline.ingest(
            message(text, str(uuid.uuid4()), chat=channel(), author=str(uuid.uuid4()))
        )
        assert result is not None and result.case_id is not None
        return result.case_id

    async def new_pending(self) -> tuple[int, int]:
        """A reply to an urgent case, waiting for a second approver: (pending id, case)."""
        case_id = await self.new_case(URGENT)
        pending = await send_reply(
            self.rt, case_id, user=self.writer, text="Call 112 now.", visibility=Visibility.PUBLIC
        )
        assert isinstance(pending, PendingReply)
        return pending.id, case_id

    async def new_lexicon_edit(self) -> int:
        edit = await self.rt.store.add_lexicon_edit(
            kind="urgent",
            term=f"blauwe lippen {uuid.uuid4().hex[:6]}",
            substance=None,
            strong=False,
            context=(),
            language="nl",
            note="",
            source="test",
            licence="",
            author=self.users[EXPERT].id,
        )
        return edit

    async def request_args(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The URL with real ids filled in, and what to send."""
        values: dict[str, str] = {}
        if "{pending_id}" in path:
            pending_id, case_id = await self.new_pending()
            values.update(pending_id=str(pending_id), case_id=str(case_id))
        elif "{case_id}" in path or "{question_id}" in path:
            values["case_id"] = str(await self.new_case())
        if "{question_id}" in path:
            from bot.models import NoteKind

            question = await self.rt.store.add_note(
                int(values["case_id"]), self.users[VOLUNTEER].id, NoteKind.QUESTION, "Is this ok?"
            )
            values["question_id"] = str(question.id)
        if "{entry_id}" in path:
            values["entry_id"] = self.entry_id
        if "{edit_id}" in path:
            values["edit_id"] = str(await self.new_lexicon_edit())
        if "{user_id}" in path:  # a fresh account each time: the matrix deactivates some
            fresh = await self.rt.store.add_user(f"p-{uuid.uuid4().hex[:8]}", "x", Role.VOLUNTEER)
            values["user_id"] = str(fresh.id)
        if "{invite_id}" in path or "{token}" in path:
            token, made = await invites.create(
                self.rt.store, role=Role.VOLUNTEER, trained=False, by=self.writer.id, hours=1
            )
            values.update(invite_id=str(made.id), token=token)
        if "{channel_id}" in path:  # a fresh channel each time: the matrix pauses some
            ref = channel(f"chat-{uuid.uuid4().hex[:8]}")
            await self.rt.pipeline.opt_in(opt_in(ref))
            found = await self.rt.store.get_channel(ref.platform, ref.chat_id)
            assert found is not None
            values["channel_id"] = str(found.id)
        url = path.format(**values)
        if method == "MOUNT":
            url = path + "/style.css"
        extra = copy.deepcopy(FORMS.get((method, path), {}))
        for part in ("data", "params"):
            if part in extra:
                extra[part] = {k: v.format(**values) for k, v in extra[part].items()}
        return url, extra


@pytest.fixture
async def world(secured: Runtime) -> AsyncIterator[World]:
    w = World(secured)
    await w.setup()
    try:
        yield w
    finally:
        await w.close()


async def stream_status(
    app: FastAPI, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """Status and headers of an endless response (the event stream): the client
    disconnects as soon as the response starts."""
    started = asyncio.Event()
    result: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        if not result.get("asked"):
            result["asked"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(msg: MutableMapping[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            result["status"] = msg["status"]
            result["headers"] = {k.decode(): v.decode() for k, v in msg["headers"]}
            started.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("console.test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return result["status"], result["headers"]


def cookie_header(client: httpx.AsyncClient) -> dict[str, str]:
    cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return {"cookie": cookies} if cookies else {}


async def send(
    world: World,
    role: str,
    method: str,
    path: str,
    *,
    csrf: str | None = "session",
    bearer: bool = False,
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """One request to a route as ``role``; ``csrf`` "session" sends the role's token in
    the header, None sends none, anything else sends that."""
    url, extra = await world.request_args(method, path)
    client = client or world.clients[role]
    headers = {"accept": "text/html" if not url.startswith("/api/") else "application/json"}
    if bearer:
        headers["authorization"] = f"Bearer {world.tokens[role]}"
    elif csrf == "session" and world.csrf.get(role):
        headers["x-csrf-token"] = world.csrf[role]
    elif csrf not in (None, "session"):
        headers["x-csrf-token"] = csrf
    if path == WEBHOOK_PATH and role != ANON:  # a right secret, whoever sends it
        headers["x-telegram-bot-api-secret-token"] = WEBHOOK_SECRET
    if (method, path) == ("POST", "/login") and world.csrf.get(
        role
    ):  # login reads its token from the form
        extra["data"] = {**extra["data"], "csrf_token": world.csrf[role]}
    if path == "/api/v1/events":
        status, got = await stream_status(world.app, url, {**headers, **cookie_header(client)})
        return httpx.Response(status, headers=got)
    return await client.request(
        "GET" if method == "MOUNT" else method, url, headers=headers, **extra
    )


def kept_out(response: httpx.Response) -> bool:
    location = response.headers.get("location", "")
    return response.status_code in (401, 403) or (
        response.is_redirect and location.rstrip("/").endswith("/login")
    )


def got_in(response: httpx.Response) -> bool:
    ok = response.is_success or response.is_redirect or response.status_code in (404, 409, 422)
    return ok and not kept_out(response)


# -- the route × role matrix ------------------------------------------------------------------


def test_every_route_has_a_rule(secured: Runtime) -> None:
    routes = app_routes(create_app(secured))
    missing = [f"{m} {p}" for m, p in routes if (m, p) not in RULES]
    assert not missing, (
        "routes without a rule in tests/test_security.py RULES (say who may use each): "
        + ", ".join(missing)
    )
    assert len(routes) >= 45


async def test_route_role_matrix(world: World) -> None:
    """Every route as every role, with real ids: exactly the roles of its rule get in."""
    wrong: list[str] = []
    checked = 0
    for method, path in app_routes(world.app):
        rule = RULES.get((method, path))
        if rule is None:
            continue  # test_every_route_has_a_rule names it
        for role in ROLES:
            client, csrf = None, "session"
            if path == "/logout" and role != ANON:  # must not end the matrix's sessions
                client, csrf = await world.login(role)
            response = await send(world, role, method, path, client=client, csrf=csrf)
            ended = None
            if client is not None:
                ended = (await client.get("/queue")).status_code == 303
                await client.aclose()
            checked += 1
            outcome = f"{method} {path} as {role}: {response.status_code}"
            if rule == "login":  # a wrong password (and the token for those logged in)
                if response.status_code != (403 if role == ANON else 401):
                    wrong.append(outcome)
            elif rule == "logout":
                if not (kept_out(response) and ended in (None, True)):
                    wrong.append(f"{outcome} (logged out: {ended})")
            elif rule == "invite":
                # Public, with its own CSRF check: anonymous sends no token and is refused;
                # the others send theirs and get an account, then go to the login page
                # (303), or 409 once the name is taken.
                expected = (403,) if role == ANON else (303, 409)
                ok = response.status_code in expected
                if not ok:
                    wrong.append(outcome)
            elif rule == "webhook":
                # Anonymous sends no secret: 403; the others send the right one and an
                # empty update, which passes the secret check and is refused as malformed.
                expected = 403 if role == ANON else 400
                if response.status_code != expected:
                    wrong.append(f"{outcome} (expected {expected})")
            elif isinstance(rule, frozenset) and role in rule:
                if not got_in(response):
                    wrong.append(f"{outcome} (should get in)")
            elif not kept_out(response):
                wrong.append(f"{outcome} (should be kept out)")
            elif role == ANON and path.startswith("/api/") and response.status_code != 401:
                wrong.append(f"{outcome} (the API answers 401 to the anonymous)")
            elif role != ANON and response.status_code != 403:
                wrong.append(f"{outcome} (a logged-in person is refused with 403)")
    assert not wrong, "\n".join(wrong)
    assert checked == len(app_routes(world.app)) * len(ROLES)


async def test_an_untrained_volunteer_gets_in_but_changes_nothing(world: World) -> None:
    """Where the matrix lets an untrained volunteer past the role check (replies,
    four-eyes, dismiss), the route's own rule refuses: nothing is sent or closed."""
    role = UNTRAINED
    case_id = await world.new_case()
    csrf = {"x-csrf-token": world.csrf[role]}
    c = world.clients[role]
    assert (
        await c.post(f"/cases/{case_id}/reply", data={"text": "hi"}, headers=csrf)
    ).status_code == 409
    api = await c.post(f"/api/v1/cases/{case_id}/replies", json={"text": "hi"}, headers=csrf)
    assert api.status_code == 409
    await c.post(f"/cases/{case_id}/dismiss", data={"reason": "spam"}, headers=csrf)
    detail = await world.rt.store.get_case(case_id)
    assert not detail.replies and detail.case.status.value == "open"
    pending_id, pending_case = await world.new_pending()
    await c.post(f"/pending/{pending_id}/approve", data={"case_id": pending_case}, headers=csrf)
    await c.post(
        f"/pending/{pending_id}/return",
        data={"case_id": pending_case, "comment": "no"},
        headers=csrf,
    )
    waiting = await world.rt.store.pending_replies(awaiting=True)
    assert pending_id in {p.id for p in waiting}


# -- CSRF -------------------------------------------------------------------------------------


def _csrf_role(rule: frozenset[str] | str) -> str:
    return COORDINATOR if not isinstance(rule, frozenset) or COORDINATOR in rule else EXPERT


async def test_csrf_on_every_state_changing_route(world: World) -> None:
    """Without the token or with a wrong one a session request is refused (403) and
    changes nothing; the same call with a bearer token needs no token."""
    wrong: list[str] = []
    checked = 0
    for method, path in app_routes(world.app):
        if method not in STATE_CHANGING or path in (WEBHOOK_PATH, "/login", "/invite/{token}"):
            continue  # the webhook has its own secret; login and invite their own check
        rule = RULES[(method, path)]
        role = _csrf_role(rule)
        client = (await world.login(role))[0] if path == "/logout" else world.clients[role]
        for label, token in (("no token", None), ("a wrong token", "x" * 43)):
            response = await send(world, role, method, path, csrf=token, client=client)
            if response.status_code != 403 or "CSRF" not in response.text:
                wrong.append(f"{method} {path} with {label}: {response.status_code}")
        # Still logged in: the refused logout did not log out.
        if path == "/logout":
            assert (await client.get("/queue")).status_code == 200
            await client.aclose()
        if path == "/logout":
            continue  # a bearer token has no session to end
        async with world.client() as cookieless:
            bearer = await send(world, role, method, path, bearer=True, client=cookieless)
        if not got_in(bearer):
            wrong.append(f"{method} {path} with a bearer token: {bearer.status_code}")
        checked += 1
    assert not wrong, "\n".join(wrong)
    assert checked >= 25


async def test_the_csrf_token_in_a_form_field_works_and_a_wrong_one_does_not(
    world: World,
) -> None:
    client = world.clients[VOLUNTEER]
    ok = await client.post("/duty", data={"on_duty": "0", "csrf_token": world.csrf[VOLUNTEER]})
    assert ok.status_code == 303
    other = await client.post("/duty", data={"on_duty": "0", "csrf_token": world.csrf[EXPERT]})
    assert other.status_code == 403  # another session's token is no good here


async def test_login_has_its_own_csrf_check(world: World) -> None:
    client = world.client()
    await client.get("/login")
    form = {"username": world.users[VOLUNTEER].username, "password": PASSWORD}
    assert (await client.post("/login", data=form)).status_code == 403
    wrong = await client.post("/login", data={**form, "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    assert (await client.get("/queue")).status_code == 303  # not logged in
    await client.aclose()


async def test_the_webhook_needs_no_session_and_no_csrf_but_its_secret(world: World) -> None:
    client = world.client()
    none = await client.post(WEBHOOK_PATH, content=b"{}")
    wrong = await client.post(
        WEBHOOK_PATH, content=b"{}", headers={"x-telegram-bot-api-secret-token": "nope"}
    )
    right = await client.post(
        WEBHOOK_PATH, content=b"{}", headers={"x-telegram-bot-api-secret-token": WEBHOOK_SECRET}
    )
    assert (none.status_code, wrong.status_code, right.status_code) == (403, 403, 400)
    await client.aclose()


# -- headers, cookies, sessions ---------------------------------------------------------------


async def test_security_headers_on_every_html_page(world: World) -> None:
    """Every GET route that answers with HTML (and the error pages) sends the headers."""
    pages = 0
    for method, path in app_routes(world.app):
        if method != "GET" or path.startswith("/api/"):
            continue
        for role in (ANON, COORDINATOR):
            response = await send(world, role, method, path)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get(name) == value, (path, role, name)
            if response.headers.get("content-type", "").startswith("text/html"):
                pages += 1
    client = world.clients[COORDINATOR]
    for url in ("/no/such/page", "/cases/999999", "/queue?status=bogus"):
        response = await client.get(url, headers={"accept": "text/html"})
        assert response.status_code in (404, 422)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (url, name)
    csp = SECURITY_HEADERS["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert pages >= 12


def _session_cookie(response: httpx.Response) -> str:
    cookies = [v for v in response.headers.get_list("set-cookie") if "peerdesk_session=" in v]
    assert cookies, response.headers
    return cookies[-1]


async def _login_response(client: httpx.AsyncClient, username: str) -> httpx.Response:
    page = await client.get("/login")
    found = CSRF_RE.search(page.text)
    assert found is not None
    return await client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": found.group(1)}
    )


async def test_the_session_cookie_is_httponly_and_samesite_lax(world: World) -> None:
    client = world.client()
    cookie = _session_cookie(await _login_response(client, world.users[VOLUNTEER].username))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=lax" in flags
    assert "secure" not in flags  # cookie_secure is off by default (plain HTTP locally)
    await client.aclose()


async def test_the_session_cookie_is_secure_when_configured(
    tmp_path: Path, seeded_sqlite: Path
) -> None:
    shutil.copyfile(seeded_sqlite, tmp_path / "peerdesk.db")
    rt = await build_runtime(secured_settings(tmp_path, PEERDESK_CONSOLE_COOKIE_SECURE="true"))
    try:
        await rt.store.add_user("ann", CHEAP_HASHER.hash(PASSWORD), Role.VOLUNTEER)
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as c:
            cookie = _session_cookie(await _login_response(c, "ann"))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite=lax"} <= flags
    finally:
        await rt.close()


async def test_a_new_session_at_login(world: World) -> None:
    """Sessions are signed cookies (Starlette), so "rotation" means: what someone knew of
    the session before the login (its cookie, its CSRF token) is worth nothing after it."""
    client = world.client()
    page = await client.get("/login")
    found = CSRF_RE.search(page.text)
    assert found is not None
    before_token = found.group(1)
    before_cookie = client.cookies["peerdesk_session"]
    response = await client.post(
        "/login",
        data={
            "username": world.users[VOLUNTEER].username,
            "password": PASSWORD,
            "csrf_token": before_token,
        },
    )
    assert response.status_code == 303
    after_cookie = client.cookies["peerdesk_session"]
    assert after_cookie != before_cookie
    queue = await client.get("/queue")
    found = CSRF_RE.search(queue.text)
    assert found is not None and found.group(1) != before_token
    # The pre-login token no longer passes the check of the logged-in session.
    stale = await client.post("/duty", data={"on_duty": "0", "csrf_token": before_token})
    assert stale.status_code == 403
    # Someone holding the pre-login cookie is not logged in by the victim's login.
    planted = world.client()
    planted.cookies.set("peerdesk_session", before_cookie)
    assert (await planted.get("/queue")).status_code == 303
    await planted.aclose()
    await client.aclose()


# -- secrets ----------------------------------------------------------------------------------


SECRETS = (TELEGRAM_TOKEN, CONSOLE_KEY, PSEUDONYM_KEY, DB_PASSWORD, WEBHOOK_SECRET)


async def test_no_secret_in_any_response_or_log_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed logins, bad requests, a failing database (500s and an unhealthy /healthz):
    no configured secret in a body, a header or a log line."""
    caplog.set_level(logging.DEBUG)
    rt = world.rt
    # The database URL of the settings carries a password; the store behind the console
    # is then switched to an unreachable PostgreSQL with that password, mid-flight.
    pg_url = f"postgresql+asyncpg://peerdesk:{DB_PASSWORD}@127.0.0.1:9/peerdesk"
    settings = dataclasses.replace(
        rt.settings, database=dataclasses.replace(rt.settings.database, url=pg_url)
    )
    assert set(SECRETS) <= set(settings_secrets(settings))
    responses: list[httpx.Response] = []
    tracebacks: list[str] = []
    anon = world.client()
    await anon.get("/login")
    responses.append(await anon.post("/login", data={"username": "x", "password": "y"}))
    page = await anon.get("/login")
    token = CSRF_RE.search(page.text)
    assert token is not None
    responses.append(
        await anon.post(
            "/login", data={"username": "x", "password": TELEGRAM_TOKEN, "csrf_token": token[1]}
        )
    )
    bad_bearer = {"authorization": f"Bearer {CONSOLE_KEY}"}
    responses.append(await anon.get("/api/v1/cases", headers=bad_bearer))
    responses.append(await anon.post(WEBHOOK_PATH, content=b"{not json"))
    responses.append(
        await anon.post(
            WEBHOOK_PATH,
            content=b"{not json",
            headers={"x-telegram-bot-api-secret-token": WEBHOOK_SECRET},
        )
    )
    responses.append(await anon.get("/healthz"))
    responses.append(await anon.get("/openapi.json"))
    coordinator = world.clients[COORDINATOR]
    csrf = {"x-csrf-token": world.csrf[COORDINATOR]}
    responses.append(await coordinator.get("/cases/99999", headers={"accept": "text/html"}))
    responses.append(await coordinator.get("/api/v1/cases/99999"))
    responses.append(
        await coordinator.post(
            "/api/v1/cases/1/replies", content=b"{broken", headers={**csrf, "content-type": "x"}
        )
    )
    responses.append(await coordinator.get("/queue?channel=abc", headers={"accept": "text/html"}))
    # The database goes away: /healthz says so, other routes fail with 500.
    broken = Store(pg_url)
    real_store = rt.store
    object.__setattr__(rt, "store", broken)
    object.__setattr__(rt, "settings", settings)
    failing = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.app, raise_app_exceptions=False),
        base_url="http://console.test",
        cookies=coordinator.cookies,
    )
    try:
        responses.append(await failing.get("/healthz"))
        assert responses[-1].status_code == 503
        responses.append(await failing.get("/api/v1/cases"))
        responses.append(await failing.get("/queue", headers={"accept": "text/html"}))
        assert responses[-1].status_code == 500
        responses.append(await failing.post("/login", data={"username": "a", "password": "b"}))
        # What the server logs for a 500 (uvicorn logs the traceback): no secret in it.
        raising = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=world.app),
            base_url="http://console.test",
            cookies=coordinator.cookies,
        )
        try:
            with pytest.raises(Exception) as failure:
                await raising.get("/api/v1/pending")
        finally:
            await raising.aclose()
        tracebacks.append("".join(traceback.format_exception(failure.value)))
        assert "127.0.0.1" in tracebacks[-1] or "Connect" in tracebacks[-1]
    finally:
        await failing.aclose()
        object.__setattr__(rt, "store", real_store)
        await broken.close()
    await anon.aclose()
    seen = []
    for response in responses:
        text = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        seen.append(text)
    logged = [caplog.handler.format(record) for record in caplog.records]
    # The handler `peerdesk` logs through (bot/logs.py) removes any that slipped in.
    redact = RedactSecrets(settings_secrets(settings))
    for record in caplog.records:
        redact.filter(record)
    redacted = [caplog.handler.format(record) for record in caplog.records]
    for secret in SECRETS:
        for text in seen:
            assert secret not in text, f"a secret in a response: {text[:300]}"
        for line in redacted:
            assert secret not in line, f"a secret in a log line: {line[:300]}"
        for text in tracebacks:
            assert secret not in text, f"a secret in a traceback: {text[-500:]}"
    leaked = [line for line in logged if any(s in line for s in SECRETS)]
    assert not leaked, "secrets logged before redaction: " + "\n".join(leaked)[:500]


def test_the_settings_repr_hides_every_secret(tmp_path: Path) -> None:
    settings = secured_settings(tmp_path)
    text = repr(settings) + str(settings)
    for secret in (TELEGRAM_TOKEN, CONSOLE_KEY, PSEUDONYM_KEY, WEBHOOK_SECRET):
        assert secret not in text


async def test_a_nul_in_a_display_name_is_stored_without_it(runtime: Runtime) -> None:
    """Found by the XSS corpus: PostgreSQL refused a display name with a NUL, so such a
    person's messages could not be stored at all."""
    from datetime import UTC, datetime

    from bot.models import IncomingMessage

    await runtime.pipeline.opt_in(opt_in())
    result = await runtime.pipeline.ingest(
        IncomingMessage(
            channel=channel(),
            message_id="nul-1",
            author_id="nul",
            author_name="Ann\x00<script>x</script>",
            text="is xtc gevaarlijk?\x00",
            sent_at=datetime.now(UTC),
        )
    )
    assert result is not None and result.case_id is not None
    stored = await runtime.store.get_message(result.message_id)
    assert (stored.author_name, stored.text) == ("Ann<script>x</script>", "is xtc gevaarlijk?")
    # So did a channel title with one, at opt-in and for a direct chat's first message.
    from dataclasses import replace

    group = replace(channel("nul-group"), title="Group\x00<b>")
    await runtime.pipeline.opt_in(opt_in(group))
    direct = replace(channel("nul-direct"), title="Dm\x00", kind="direct")
    for ref in (group, direct):
        result = await runtime.pipeline.ingest(
            IncomingMessage(
                channel=ref,
                message_id=f"nul-{ref.chat_id}",
                author_id="nul",
                author_name="Ann",
                text="is xtc gevaarlijk?",
                sent_at=datetime.now(UTC),
            )
        )
        assert result is not None and result.case_id is not None
        stored_channel = await runtime.store.get_channel("fake", ref.chat_id)
        assert stored_channel is not None and "\x00" not in stored_channel.title


async def test_a_session_cookie_is_worthless_after_logout(world: World) -> None:
    """Logging out ends the session for whoever holds a copy of its cookie."""
    client, token = await world.login(VOLUNTEER)
    copy_of_cookie = client.cookies["peerdesk_session"]
    assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
    thief = world.client()
    thief.cookies.set("peerdesk_session", copy_of_cookie)
    assert (await thief.get("/queue")).status_code == 303
    await thief.aclose()
    await client.aclose()

"""Shared fixtures: a guard against network access, settings, a migrated store on SQLite
or PostgreSQL, and a runtime with the seed FAQ."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from bot.models import Role, User
from bot.passwords import hash_password
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings, load_settings
from bot.store import Store

# Property tests (tests/test_properties.py): the same examples on every run, so CI cannot
# pass one day and fail the next on a new random draw, and no time limit per example
# (speed is for bench/, and a loaded 2-core machine is slow at times).
hypothesis_settings.register_profile("peerdesk", deadline=None, derandomize=True, database=None)
hypothesis_settings.load_profile("peerdesk")

POSTGRES_ADMIN_DSN = os.environ.get(
    "PEERDESK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# -- no network ---------------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_local(address):
        raise OSError(f"tests may not reach the network (tried {address!r})")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_local(address):
        raise OSError(f"tests may not reach the network (tried {address!r})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


# -- databases ----------------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database per test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'peerdesk.db'}"
        return
    yield from _postgres_database()


def _postgres_database() -> Iterator[str]:
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"peerdesk_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database only, for what needs several instances on one database
    (mark the test ``postgres``)."""
    yield from _postgres_database()


def make_settings(tmp_path: Path, database_url: str, **env: str) -> Settings:
    environ = {
        "PEERDESK_DATABASE_URL": database_url,
        "PEERDESK_DEMO_TRANSCRIPT_PATH": str(tmp_path / "demo.jsonl"),
        "PEERDESK_DEMO_INTERVAL_SECONDS": "0.01",
        "PEERDESK_OUTBOX_POLL_SECONDS": "0.05",
        "PEERDESK_OUTBOX_RETRY_SECONDS": "0",
        "PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES": "published,in_review",
        # Lexical search keeps most tests fast; tests/test_faq.py covers the embedders.
        "PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE": "lexical",
        # Likewise the lexicon detector; tests/test_classifier.py and the tests that ask
        # for it cover the trained one.
        "PEERDESK_DETECTION_MODE": "lexicon",
        **env,
    }
    return load_settings(None, environ=environ, cwd=tmp_path)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = Store(settings.database.url)
    await s.initialize()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store with the seed FAQ imported, built once per test session:
    each runtime test starts from a copy instead of migrating and importing again."""
    folder = tmp_path_factory.mktemp("seeded")
    path = folder / "peerdesk.db"

    async def build() -> None:
        rt = await build_runtime(make_settings(folder, f"sqlite+aiosqlite:///{path}"))
        await rt.close()

    asyncio.run(build())
    return path


@pytest.fixture
async def runtime(settings: Settings, seeded_sqlite: Path) -> AsyncIterator[Runtime]:
    url = settings.database.url
    if url.startswith("sqlite+aiosqlite:///"):
        target = Path(url.removeprefix("sqlite+aiosqlite:///"))
        if not target.exists():
            for suffix in ("", "-wal", "-shm"):  # a WAL is normally checkpointed at close
                source = seeded_sqlite.with_name(seeded_sqlite.name + suffix)
                if source.exists():
                    shutil.copyfile(source, target.with_name(target.name + suffix))
    rt = await build_runtime(settings)
    try:
        yield rt
    finally:
        await rt.close()


# -- the console ----------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the console in-process."""
    from console.app import create_app

    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
        yield c


async def add_user(rt: Runtime, username: str, role: Role = Role.VOLUNTEER) -> User:
    return await rt.store.add_user(username, hash_password(PASSWORD), role)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    page = await client.get("/login")
    token = CSRF_RE.search(page.text)
    assert token is not None
    response = await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
    )
    assert response.status_code == 303, response.text
    queue = await client.get("/queue")
    token = CSRF_RE.search(queue.text)
    assert token is not None
    return token.group(1)


async def flagged_case(rt: Runtime, text: str = "is xtc met alcohol gevaarlijk?") -> int:
    """Opt a fake channel in and post a drug question; returns the new case id."""
    from tests.fakes import message, opt_in

    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message(text, str(uuid.uuid4())))
    assert result is not None and result.case_id is not None
    return result.case_id


# -- the real browser (tests/test_browser.py, tests/test_xss.py) ------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (the browser tests must run in CI)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()

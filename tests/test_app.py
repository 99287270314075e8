"""The console application: health, security headers, static files."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from bot.runtime import Runtime


async def test_healthz_reports_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["demo"]) == ("ok", "ok", False)


async def test_healthz_reports_a_lost_database(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await runtime.store.engine.dispose()
    # The database goes away: point the store at one that cannot be reached.
    runtime.store.engine = create_async_engine(
        "postgresql+asyncpg://nobody@127.0.0.1:1/none", connect_args={"timeout": 2}
    )
    response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "error"


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for path in ("/login", "/healthz", "/static/style.css", "/nope"):
        headers = (await client.get(path)).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in headers["content-security-policy"]


async def test_session_cookie_is_httponly_and_samesite(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie

"""Ended console sessions: logging out ends that session for every copy of its cookie,
on every instance, and leaves the person's other sessions alone."""

from __future__ import annotations

from datetime import timedelta

import httpx
import sqlalchemy as sa

from bot import schema as t
from bot import sessions
from bot.models import Role, utcnow
from bot.runtime import Runtime
from bot.store import Store
from console.app import create_app
from tests.conftest import add_user, login


async def test_an_ended_session_is_known_and_recording_it_twice_is_harmless(store: Store) -> None:
    user = await store.add_user("vera", "hash", Role.VOLUNTEER)
    sid = sessions.new_session_id()
    assert not await sessions.ended(store, sid)
    await sessions.end(store, sid, user.id, valid_hours=12)
    await sessions.end(store, sid, user.id, valid_hours=12)
    assert await sessions.ended(store, sid)
    assert not await sessions.ended(store, sessions.new_session_id())


async def test_records_go_once_the_cookie_would_have_expired(store: Store) -> None:
    user = await store.add_user("vera", "hash", Role.VOLUNTEER)
    old, recent = sessions.new_session_id(), sessions.new_session_id()
    await sessions.end(store, old, user.id, valid_hours=1)
    await sessions.end(store, recent, user.id, valid_hours=1)
    async with store.engine.begin() as conn:
        await conn.execute(
            t.ended_sessions.update()
            .where(t.ended_sessions.c.session_id == old)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    assert await sessions.forget_expired(store) == 1
    async with store.engine.connect() as conn:
        left = (await conn.execute(sa.select(t.ended_sessions.c.session_id))).scalars().all()
    assert left == [recent]


async def test_logging_out_ends_this_session_everywhere_but_not_the_others(
    runtime: Runtime,
) -> None:
    await add_user(runtime, "vera")
    # Two instances of the console on the same database, and two devices.
    one, two = (httpx.ASGITransport(app=create_app(runtime)) for _ in range(2))
    async with (
        httpx.AsyncClient(transport=one, base_url="http://one.test") as laptop,
        httpx.AsyncClient(transport=one, base_url="http://one.test") as phone,
        httpx.AsyncClient(transport=two, base_url="http://two.test") as thief,
    ):
        token = await login(laptop, "vera")
        await login(phone, "vera")
        thief.cookies.set("peerdesk_session", laptop.cookies["peerdesk_session"])
        assert (await thief.get("/queue")).status_code == 200  # a copy works until logout
        assert (await laptop.post("/logout", data={"csrf_token": token})).status_code == 303
        assert (await thief.get("/queue")).status_code == 303  # to the login page
        assert (await thief.get("/api/v1/cases")).status_code == 401
        assert (await phone.get("/queue")).status_code == 200  # the other device stays in

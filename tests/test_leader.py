"""The scheduled jobs' lock: one holder across instances, kept between ticks, taken over
when the holder stops or loses its connection."""

from __future__ import annotations

import asyncio

import pytest
from asyncpg.exceptions._base import InternalClientError  # type: ignore[import-untyped]

from bot.leader import Leader
from tests.conftest import _pg_admin


async def test_with_one_process_it_always_runs() -> None:
    leader = Leader(None)
    assert await leader.acquire()
    assert leader.holding
    await leader.release()


@pytest.fixture
def dsn(postgres_url: str) -> str:
    return postgres_url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.mark.postgres
async def test_one_instance_holds_it_until_it_lets_go(dsn: str) -> None:
    one, two = Leader(dsn), Leader(dsn)
    try:
        assert await asyncio.gather(one.acquire(), two.acquire()) in ([True, False], [False, True])
        holder, other = (one, two) if one.holding else (two, one)
        for _ in range(3):  # the same instance, tick after tick
            assert (await holder.acquire(), await other.acquire()) == (True, False)
        await holder.release()
        assert (await other.acquire(), await holder.acquire()) == (True, False)
    finally:
        await one.release()
        await two.release()


@pytest.mark.postgres
async def test_a_holder_whose_connection_drops_gives_way(dsn: str) -> None:
    one, two = Leader(dsn), Leader(dsn)
    try:
        assert await one.acquire()
        await _pg_admin(f"SELECT pg_terminate_backend({one._conn.get_server_pid()})")
        assert await two.acquire()
        assert not await one.acquire()  # noticed the loss; the lock is two's now
        assert not one.holding
    finally:
        await one.release()
        await two.release()


async def test_any_failure_of_the_held_connection_gives_way(dsn: str) -> None:
    """A connection the server ended can fail with asyncpg's InternalClientError (seen in
    CI after pg_terminate_backend), which is neither an InterfaceError nor a PostgresError:
    it too means "no longer holding", not a crash of the minute's jobs."""
    leader = Leader(dsn)
    assert await leader.acquire()
    real = leader._conn

    class Ended:
        async def fetchval(self, *args: object, **kwargs: object) -> object:
            raise InternalClientError("cannot switch to state 11; another operation (2)")

        async def close(self, **_: object) -> None:  # called with timeout=
            await real.close()  # the lock goes with the connection

    leader._conn = Ended()
    try:
        assert await leader.acquire()  # dropped the ended one, took the lock afresh
        assert leader._conn is not None and leader._conn is not real
    finally:
        await leader.release()

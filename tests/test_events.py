"""The case-event broadcaster: in order, to every subscriber, across threads, closable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator

import pytest

from bot.events import (
    CHANNEL,
    CaseEvent,
    CaseEventKind,
    LocalBroadcaster,
    PostgresBroadcaster,
    Subscription,
)
from tests.conftest import _pg_admin


async def test_every_subscriber_hears_every_event_in_order() -> None:
    bus = LocalBroadcaster()
    bus.publish(CaseEvent(CaseEventKind.OPENED, 0))  # nobody listening: dropped
    async with bus.subscribe() as one, bus.subscribe() as two:
        assert bus.subscribers == 2
        for n in (1, 2, 3):
            bus.publish(CaseEvent(CaseEventKind.OPENED, n, urgent=n == 2))
        for sub in (one, two):
            got = [await sub.get() for _ in range(3)]
            assert [(e.case_id, e.urgent) for e in got if e] == [(1, False), (2, True), (3, False)]
    assert bus.subscribers == 0
    event = CaseEvent(CaseEventKind.ALERT, 7, urgent=True)
    assert event.as_dict() == {
        "kind": "alert",
        "case": 7,
        "urgent": True,
        "at": event.at.isoformat(),
    }


async def test_closing_ends_every_subscription() -> None:
    bus = LocalBroadcaster()
    async with bus.subscribe() as sub:
        received: list[int] = []

        async def listen() -> None:
            async for event in sub:
                received.append(event.case_id)

        task = asyncio.create_task(listen())
        bus.publish(CaseEvent(CaseEventKind.UPDATED, 1))
        await asyncio.sleep(0)
        bus.close()
        await asyncio.wait_for(task, 2)
        assert received == [1]
        assert await sub.get() is None  # and stays closed
    async with bus.subscribe() as late:  # subscribing after close ends at once
        assert await late.get() is None


async def test_a_slow_listener_loses_events_not_memory() -> None:
    bus = LocalBroadcaster(queue_size=2)
    async with bus.subscribe() as sub:
        for n in range(5):
            bus.publish(CaseEvent(CaseEventKind.UPDATED, n))
        bus.close()
        assert sub.dropped == 4  # three that found it full, one evicted for the close
        got = [await sub.get(), await sub.get(), await sub.get()]
        assert [e.case_id if e else None for e in got] == [1, None, None]


async def test_publishing_from_another_thread_reaches_this_loop() -> None:
    bus = LocalBroadcaster()
    async with bus.subscribe() as sub:
        thread = threading.Thread(target=bus.publish, args=(CaseEvent(CaseEventKind.CLAIMED, 5),))
        thread.start()
        thread.join()
        event = await asyncio.wait_for(sub.get(), 2)
        assert event is not None and event.case_id == 5


# -- across instances: PostgreSQL LISTEN/NOTIFY --------------------------------------------


@pytest.fixture
def pg_dsn(postgres_url: str) -> str:
    """A throwaway PostgreSQL database, as a plain (asyncpg) DSN."""
    return postgres_url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.asynccontextmanager
async def _instances(dsn: str, count: int) -> AsyncIterator[list[PostgresBroadcaster]]:
    buses = [PostgresBroadcaster(dsn) for _ in range(count)]
    for bus in buses:
        await bus.start()
    try:
        yield buses
    finally:
        for bus in buses:
            bus.close()
            await bus.stop()


async def _next(sub: Subscription, within: float = 5.0) -> CaseEvent | None:
    return await asyncio.wait_for(sub.get(), within)


async def _quiet(sub: Subscription, within: float = 0.3) -> bool:
    """Nothing more arrives within ``within`` seconds."""
    try:
        await asyncio.wait_for(sub.get(), within)
    except TimeoutError:
        return True
    return False


@pytest.mark.postgres
async def test_an_event_published_on_one_instance_reaches_the_other_once(pg_dsn: str) -> None:
    async with (
        _instances(pg_dsn, 2) as (one, two),
        one.subscribe() as here,
        two.subscribe() as there,
    ):
        sent = CaseEvent(CaseEventKind.OPENED, 7, urgent=True)
        one.publish(sent)
        assert await _next(here) == sent
        assert await _next(there) == sent
        # Its own notification comes back to `one` too, and is not delivered again.
        assert await _quiet(here)
        assert await _quiet(there)
        back = CaseEvent(CaseEventKind.CLAIMED, 7)
        two.publish(back)
        assert await _next(here) == back
        assert await _next(there) == back


@pytest.mark.postgres
async def test_notifications_carry_ids_only(pg_dsn: str) -> None:
    import asyncpg

    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_dsn)
    try:
        await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
        async with _instances(pg_dsn, 1) as (bus,):
            bus.publish(CaseEvent(CaseEventKind.ALERT, 3, urgent=True))
            payload = json.loads(await asyncio.wait_for(heard.get(), 5))
    finally:
        await listener.close()
    assert sorted(payload) == ["at", "case", "kind", "origin", "urgent"]
    assert (payload["kind"], payload["case"], payload["urgent"]) == ("alert", 3, True)


@pytest.mark.postgres
async def test_a_dropped_connection_is_opened_again(pg_dsn: str) -> None:
    async with _instances(pg_dsn, 2) as (one, two):
        pid = two._conn.get_server_pid()
        await _pg_admin(f"SELECT pg_terminate_backend({pid})")
        async with asyncio.timeout(10):
            while two.connections < 2 or not two.connected.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with two.subscribe() as there:
            one.publish(CaseEvent(CaseEventKind.UPDATED, 11))
            event = await _next(there)
            assert event is not None and (event.kind, event.case_id) == ("updated", 11)
        # And what `two` publishes still goes out.
        async with one.subscribe() as here:
            two.publish(CaseEvent(CaseEventKind.CLOSED, 12))
            event = await _next(here)
            assert event is not None and (event.kind, event.case_id) == ("closed", 12)


@pytest.mark.postgres
async def test_events_published_while_the_database_is_unreachable_go_out_later(
    pg_dsn: str,
) -> None:
    async with _instances(pg_dsn, 1) as (one,):
        late = PostgresBroadcaster(pg_dsn.replace(":5432/", ":1/"))  # nobody listens there
        start = asyncio.create_task(late.start())
        await asyncio.sleep(0.2)
        late.publish(CaseEvent(CaseEventKind.OPENED, 5))  # queued, not lost
        late.dsn = pg_dsn  # the database "comes back"
        await start
        async with one.subscribe() as here:
            event = await _next(here, within=15)
        assert event is not None and event.case_id == 5
        late.close()
        await late.stop()


@pytest.mark.postgres
async def test_stopping_leaves_no_task_behind(pg_dsn: str) -> None:
    before = asyncio.all_tasks()
    async with _instances(pg_dsn, 1) as (_bus,):
        await asyncio.sleep(0.1)  # the relay is waiting for something to send
        assert any(t.get_name() == "case-events" for t in asyncio.all_tasks())
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == [], left


@pytest.mark.postgres
async def test_an_event_for_one_person_keeps_its_addressee_across_instances(pg_dsn: str) -> None:
    async with _instances(pg_dsn, 2) as (one, two), two.subscribe() as there:
        one.publish(CaseEvent(CaseEventKind.EXPERT_ANSWER, 4, user=17))
        event = await _next(there)
        assert event is not None and (event.kind, event.case_id, event.user) == (
            "expert_answer",
            4,
            17,
        )

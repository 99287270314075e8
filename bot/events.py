"""What happened to cases, told to whoever is listening (the console's live queue).

:class:`Broadcaster` is the seam. :class:`LocalBroadcaster`: this instance's own listeners
hear what this instance publishes (one process, SQLite). :class:`PostgresBroadcaster`
adds PostgreSQL LISTEN/NOTIFY so that every instance's consoles hear every instance's
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.models import utcnow

logger = logging.getLogger(__name__)


class CaseEventKind(StrEnum):
    OPENED = "opened"  # a new case
    UPDATED = "updated"  # a new message in it, an edit, a deletion
    CLAIMED = "claimed"  # claimed, released, reassigned or lapsed
    ANSWERED = "answered"  # a reply was approved
    CLOSED = "closed"  # dismissed
    ALERT = "alert"  # an urgent case nobody has claimed: tell the volunteers on duty
    EXPERT_ANSWER = "expert_answer"  # an expert answered the question ``user`` asked


@dataclass(frozen=True)
class CaseEvent:
    kind: CaseEventKind
    case_id: int
    urgent: bool = False
    at: datetime = field(default_factory=utcnow)
    user: int | None = None  # the team member it is for, when it is for one

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "case": self.case_id,
            "urgent": self.urgent,
            "at": self.at.isoformat(),
        }
        if self.user is not None:
            out["user"] = self.user
        return out


class Broadcaster(ABC):
    """Publishes case events to every subscriber."""

    @abstractmethod
    def publish(self, event: CaseEvent) -> None:
        """Hand ``event`` to every current subscriber; never blocks, never raises."""

    @abstractmethod
    def subscribe(self) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """``async with bus.subscribe() as events: async for event in events`` — the
        iteration ends when the broadcaster closes."""

    def close(self) -> None:  # noqa: B027 (optional: a harmless default)
        """End every subscription (at shutdown, so open streams let the server stop)."""

    async def start(self) -> None:  # noqa: B027 (optional: a harmless default)
        """Open what the broadcaster needs (a database connection); pairs with ``stop``."""

    async def stop(self) -> None:  # noqa: B027 (optional: a harmless default)
        """Send what is still pending and disconnect."""


_CLOSED = object()


class Subscription:
    """One listener's events, in order; ``get`` returns None once the broadcaster closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.closed = False

    def put(self, item: object) -> None:
        """Called on the subscriber's own event loop."""
        if self.closed:
            return
        if item is _CLOSED:
            self.closed = True
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A listener that does not keep up loses events rather than holding memory;
            # the console refreshes the whole queue on any event, so the next one heals it.
            self.dropped += 1
            if item is _CLOSED:
                self.queue.get_nowait()
                self.queue.put_nowait(item)

    async def get(self) -> CaseEvent | None:
        """The next event (waiting for it), or None when the broadcaster has closed."""
        item = await self.queue.get()
        if item is _CLOSED:
            self.queue.put_nowait(item)  # every later call answers None too
            return None
        assert isinstance(item, CaseEvent)
        return item

    def __aiter__(self) -> AsyncIterator[CaseEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[CaseEvent]:
        while (event := await self.get()) is not None:
            yield event


class LocalBroadcaster(Broadcaster):
    """Subscribers in this process, on any event loop (publishing is thread-safe)."""

    def __init__(self, *, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def _deliver(self, sub: Subscription, item: object) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is sub.loop:
            sub.put(item)
        else:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                sub.loop.call_soon_threadsafe(sub.put, item)

    def publish(self, event: CaseEvent) -> None:
        logger.debug("case event %s", event)
        for sub in list(self._subscriptions):
            self._deliver(sub, event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = Subscription(asyncio.get_running_loop(), self.queue_size)
        if self._closed:
            sub.put(_CLOSED)
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subscriptions):
            self._deliver(sub, _CLOSED)


#: The PostgreSQL channel every instance listens on.
CHANNEL = "peerdesk_case_events"
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


class PostgresBroadcaster(LocalBroadcaster):
    """Every instance's events to every instance's subscribers, over LISTEN/NOTIFY.

    ``publish`` delivers to this process's subscribers at once and queues a NOTIFY with
    the event's ids only (never chat text); one asyncpg connection sends the queued
    NOTIFYs and LISTENs, handing other instances' events to the local subscribers. Its
    own notifications carry its ``origin`` and are ignored when they come back, so a
    local subscriber hears each event once. A dropped connection is opened again with
    backoff; events published meanwhile are sent once it is back, and events other
    instances published during the gap are missed (the console heals on the next one).
    """

    def __init__(self, dsn: str, *, queue_size: int = 100, outgoing_size: int = 1000) -> None:
        super().__init__(queue_size=queue_size)
        self.dsn = dsn
        self.origin = uuid.uuid4().hex
        self.connected = asyncio.Event()
        self.connections = 0  # how many times LISTEN was set up (for operators and tests)
        self.dropped_outgoing = 0
        self._outgoing_size = outgoing_size
        self._outgoing: asyncio.Queue[dict[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    def publish(self, event: CaseEvent) -> None:
        super().publish(event)
        if self._loop is None or self._outgoing is None:
            return  # not started: a one-off command, nobody else to tell
        payload = {**event.as_dict(), "origin": self.origin}
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._enqueue(payload)
        else:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._enqueue, payload)

    def _enqueue(self, payload: dict[str, Any]) -> None:
        assert self._outgoing is not None
        try:
            self._outgoing.put_nowait(payload)
        except asyncio.QueueFull:
            # Other instances miss this one; their consoles heal on the next event.
            self.dropped_outgoing += 1
            if self.dropped_outgoing % 1000 == 1:
                logger.warning(
                    "case events: the database is not keeping up; %d not sent to other "
                    "instances so far",
                    self.dropped_outgoing,
                )

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._outgoing = asyncio.Queue(maxsize=self._outgoing_size)
        self._task = asyncio.create_task(self._run(), name="case-events")
        # Start listening before returning when the database is there; go on regardless.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is None:
            return
        if self._outgoing is not None and self.connected.is_set():
            with contextlib.suppress(TimeoutError):  # what was published before the stop
                await asyncio.wait_for(self._outgoing.join(), timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data.get("origin") == self.origin:
                return  # published here, and delivered here already
            event = CaseEvent(
                CaseEventKind(data["kind"]),
                int(data["case"]),
                urgent=bool(data["urgent"]),
                at=datetime.fromisoformat(data["at"]),
                user=int(data["user"]) if data.get("user") is not None else None,
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("case events: ignoring a malformed notification")
            return
        LocalBroadcaster.publish(self, event)

    async def _run(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        failures = 0
        pending: dict[str, Any] | None = None
        assert self._outgoing is not None
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, gone=lost: gone.set())
                await conn.add_listener(CHANNEL, self._received)
                self._conn = conn
                self.connections += 1
                self.connected.set()
                failures = 0
                while True:
                    if pending is None:
                        getting = asyncio.create_task(
                            self._outgoing.get(), name="case-events-outgoing"
                        )
                        losing = asyncio.create_task(lost.wait(), name="case-events-lost")
                        try:
                            done, _ = await asyncio.wait(
                                {getting, losing}, return_when=asyncio.FIRST_COMPLETED
                            )
                        finally:  # a stop cancels us here: neither helper may outlive it
                            losing.cancel()
                            if not getting.done():
                                getting.cancel()
                        if getting not in done or getting.cancelled():
                            raise ConnectionError("the LISTEN connection was closed")
                        pending = getting.result()
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(pending))
                    pending = None
                    self._outgoing.task_done()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                logger.warning(
                    "case events: database connection lost (%s); again in %ss", exc, delay
                )
                self.connected.clear()
                await asyncio.sleep(delay)
            finally:
                self._conn = None
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)

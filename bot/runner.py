"""`peerdesk run`: adapters, pipeline, outbox worker and console in one event loop; and
the same parts apart (`peerdesk bot`, `console`, `worker`) for several processes sharing
one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from bot.models import Role
from bot.passwords import hash_password
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.store import StoreError

logger = logging.getLogger(__name__)

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"

AppFactory = Callable[[Runtime], Any]


@dataclass(frozen=True)
class Parts:
    """Which parts of peerdesk a process runs; ``Parts()`` is all of them (`peerdesk run`).

    Every process refreshes its own FAQ index and detector every minute.
    """

    #: The platform adapters with the pipeline, and the outbox worker: replies leave
    #: through the platform connections this process holds.
    bot: bool = True
    #: The web console. It also receives webhooks (Telegram in webhook mode), so the
    #: adapters that receive through it are started for that even without ``bot``.
    console: bool = True
    #: The scheduled jobs: recovery, FAQ expiry, claim lapses, urgent re-alerts (once
    #: across instances, on the one holding the lock).
    worker: bool = True


BOT = Parts(bot=True, console=False, worker=False)
CONSOLE = Parts(bot=False, console=True, worker=False)
WORKER = Parts(bot=False, console=False, worker=True)


class StartupError(Exception):
    """peerdesk cannot start; the message says why in an operator's words."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Open the console's listening socket, or explain why it cannot be opened."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"console.host {host!r} is not a usable address: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


DEMO_USER_KEY = "demo_user_id"


async def ensure_demo_user(rt: Runtime) -> None:
    """Create (or re-enable) the demo login, and remember which account it is."""
    found = await rt.store.user_credentials(DEMO_USERNAME)
    if found is None:
        with contextlib.suppress(StoreError):  # created by a concurrent start
            await rt.store.add_user(DEMO_USERNAME, hash_password(DEMO_PASSWORD), Role.COORDINATOR)
        found = await rt.store.user_credentials(DEMO_USERNAME)
        assert found is not None
        await rt.store.set_meta(DEMO_USER_KEY, str(found[0].id))
    elif await rt.store.get_meta(DEMO_USER_KEY) == str(found[0].id) and not found[0].active:
        await rt.store.set_user_active(found[0].id, True)


async def disable_demo_user(rt: Runtime) -> None:
    """Outside demo mode the demo login (a public password) must not work."""
    demo_id = await rt.store.get_meta(DEMO_USER_KEY)
    if demo_id is None:
        return
    user = await rt.store.get_user(int(demo_id))
    if user is not None and user.active:
        await rt.store.set_user_active(user.id, False)
        logger.warning("the demo account %r is disabled outside demo mode", user.username)


MAINTENANCE_SECONDS = 60.0


async def _maintain(rt: Runtime, stop: asyncio.Event, *, shared: bool) -> None:
    """Run :meth:`Runtime.maintain` every MAINTENANCE_SECONDS until ``stop``."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=MAINTENANCE_SECONDS)
        if stop.is_set():
            return
        try:
            await rt.maintain(shared=shared)
        except Exception:
            logger.exception("maintenance failed; trying again later")


async def run(
    settings: Settings,
    *,
    app_factory: AppFactory,
    stop: asyncio.Event,
    demo: bool = False,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[str], None] | None = None,
    parts: Parts = Parts(),
) -> None:
    """Run ``parts`` until ``stop`` is set, then shut every part down in reverse order.
    ``on_ready`` gets the console's address (an empty string without a console)."""
    host = host or settings.console.host
    port = settings.console.port if port is None else port
    sock = bind(host, port) if parts.console else None
    try:
        rt = await build_runtime(settings, demo=demo)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    outbox_task: asyncio.Task[None] | None = None
    maintenance_task: asyncio.Task[None] | None = None
    server_task: asyncio.Task[None] | None = None
    started: list[Any] = []
    try:
        if demo:
            await ensure_demo_user(rt)
        else:
            await disable_demo_user(rt)
        await rt.maintain(shared=parts.worker)
        for name, adapter in rt.adapters.items():
            if parts.bot or (parts.console and adapter.webhooks()):
                await adapter.start(rt.pipeline)
                started.append(adapter)
            else:
                rt.elsewhere.add(name)
        if parts.bot:
            outbox_task = asyncio.create_task(rt.outbox.run(stop), name="outbox")
        maintenance_task = asyncio.create_task(
            _maintain(rt, stop, shared=parts.worker), name="maintenance"
        )
        if sock is None:
            if on_ready is not None:
                on_ready("")
            await stop.wait()
            return

        config = uvicorn.Config(
            app_factory(rt),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="console")
        while not server.started and not server_task.done():  # noqa: ASYNC110 (uvicorn has only a flag)
            await asyncio.sleep(0.02)
        if server_task.done():
            server_task.result()
            raise StartupError("the console stopped during startup")
        bound_port = sock.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if on_ready is not None:
            on_ready(f"http://{shown}:{bound_port}")
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_wait, server_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        server.should_exit = True
        stop.set()
    finally:
        stop.set()
        rt.events.close()  # open live-queue streams end, so the server can stop
        if server_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await server_task
        # The outbox finishes the delivery it is in while the adapters can still send;
        # what it has not started stays queued for the next start.
        if outbox_task is not None:
            await outbox_task
        if maintenance_task is not None:
            await maintenance_task
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                logger.exception("adapter %s did not stop cleanly", adapter.platform)
        await rt.close()
        if sock is not None:
            sock.close()

"""End to end through HTTP: `peerdesk run --demo`, in-process and as a real process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from bot.runner import StartupError, bind, run
from bot.settings import Settings
from console.app import create_app
from tests.conftest import make_settings

ORDINARY = (
    "wie gaat er zaterdag",
    "coke zero",
    "speed camera",
    "trip à Barcelone",
    "verjaardagsfeest",
)
T = TypeVar("T")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _start(settings: Settings) -> tuple[asyncio.Task[None], asyncio.Event, str]:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(
            settings,
            app_factory=create_app,
            stop=stop,
            demo=True,
            host="127.0.0.1",
            port=0,
            on_ready=ready.set_result,
        )
    )
    url = await asyncio.wait_for(ready, timeout=30)
    return task, stop, url


async def _login(client: httpx.AsyncClient) -> str:
    token = CSRF.search((await client.get("/login")).text)
    assert token is not None
    response = await client.post(
        "/login", data={"username": "demo", "password": "demo", "csrf_token": token.group(1)}
    )
    assert response.status_code == 303
    token = CSRF.search((await client.get("/queue")).text)
    assert token is not None
    return token.group(1)


async def _wait_for(predicate: Callable[[], Awaitable[T]], within: float = 20.0) -> T:
    """Poll ``predicate`` until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(0.1)


async def test_demo_end_to_end_and_restart(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, PEERDESK_DEMO_INTERVAL_SECONDS="0.02")
    task, stop, url = await _start(settings)
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).json()["status"] == "ok"
            csrf = await _login(client)

            async def all_played() -> list[dict[str, object]] | None:
                cases = (await client.get("/api/v1/cases")).json()["cases"]
                lines = await client.get("/demo")
                return cases if "merci pour la soirée" in lines.text else None

            cases = await _wait_for(all_played)
            excerpts = [str(c["excerpt"]) for c in cases]
            assert any("xtc" in e for e in excerpts)
            assert not any(o in e for e in excerpts for o in ORDINARY)
            assert cases[0]["urgent"] is True  # urgent first
            queue = await client.get("/queue")
            assert "URGENT" in queue.text

            target = next(c for c in cases if "whippets" in str(c["excerpt"]))
            text = "Ballonnen: altijd zittend, nooit rechtstreeks uit de tank. Take care!"
            sent = await client.post(
                f"/cases/{target['id']}/reply",
                data={"text": text, "visibility": "public", "csrf_token": csrf},
            )
            assert sent.status_code == 303

            async def delivered() -> bool:
                detail = (await client.get(f"/api/v1/cases/{target['id']}")).json()
                return bool(detail["replies"] and detail["replies"][0]["status"] == "sent")

            await _wait_for(delivered)
            transcript = (await client.get("/demo")).text
            assert transcript.count("Ballonnen: altijd zittend") == 1
            detail = (await client.get(f"/api/v1/cases/{target['id']}")).json()
            assert detail["replies"][0]["approved_by"] == "demo"
            before = {c["id"] for c in cases}
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    task, stop, url = await _start(settings)
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            await _login(client)
            detail = (await client.get(f"/api/v1/cases/{target['id']}")).json()
            assert [(r["text"], r["status"]) for r in detail["replies"]] == [(text, "sent")]
            open_ids = {c["id"] for c in (await client.get("/api/v1/cases")).json()["cases"]}
            assert open_ids == before - {target["id"]}
            await asyncio.sleep(0.3)  # the demo must not replay its script as new messages
            transcript = (await client.get("/demo")).text
            assert transcript.count("Ballonnen: altijd zittend") == 1
            assert transcript.count("whippets r they safe?") == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def test_bind_explains_a_busy_port() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    finally:
        taken.close()


@pytest.mark.slow
def test_peerdesk_run_demo_as_a_process(tmp_path: Path) -> None:
    """The README's command, as a real process with default pacing: cases within 15 s,
    Ctrl-C stops it cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--demo", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    # A hung process must fail the test, not hang CI.
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"(http://\S+)", first)
        assert match, first + (process.stderr.read() if process.stderr else "")
        assert "demo / demo" in process.stdout.readline()
        url = match.group(1)
        with httpx.Client(base_url=url) as client:
            token = CSRF.search(client.get("/login").text)
            assert token is not None
            client.post(
                "/login",
                data={"username": "demo", "password": "demo", "csrf_token": token.group(1)},
            )
            cases: list[object] = []
            while time.monotonic() - started < 15 and not cases:
                cases = client.get("/api/v1/cases").json()["cases"]
                time.sleep(0.25)
            assert cases, "no flagged demo message within 15 s"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "peerdesk stopped" in out
        assert (tmp_path / "peerdesk.db").exists()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()


async def test_the_demo_login_works_only_in_demo_mode(tmp_path: Path, database_url: str) -> None:
    from bot.runner import disable_demo_user, ensure_demo_user
    from bot.runtime import build_runtime

    rt = await build_runtime(make_settings(tmp_path, database_url))
    try:
        await ensure_demo_user(rt)
        found = await rt.store.user_credentials("demo")
        assert found is not None and found[0].active
        await disable_demo_user(rt)  # what `peerdesk run` without --demo does
        found = await rt.store.user_credentials("demo")
        assert found is not None and not found[0].active
        await ensure_demo_user(rt)  # back in demo mode
        found = await rt.store.user_credentials("demo")
        assert found is not None and found[0].active
    finally:
        await rt.close()


async def test_a_user_named_demo_is_left_alone(tmp_path: Path, database_url: str) -> None:
    from bot.models import Role
    from bot.passwords import hash_password
    from bot.runner import disable_demo_user
    from bot.runtime import build_runtime

    rt = await build_runtime(make_settings(tmp_path, database_url))
    try:
        await rt.store.add_user("demo", hash_password("a real password"), Role.EXPERT)
        await disable_demo_user(rt)
        found = await rt.store.user_credentials("demo")
        assert found is not None and found[0].active
    finally:
        await rt.close()

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

from bot.runner import BOT, CONSOLE, WORKER, Parts, StartupError, bind, run
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
    """The README's command, as a real process with default pacing: cases appear once the
    console is up, Ctrl-C stops it cleanly. (How fast it starts is measured in bench/,
    not here: a loaded CI machine must not fail this.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--demo", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # A hung process must fail the test, not hang CI.
    watchdog = threading.Timer(180, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"(http://\S+)", first)
        assert match, first + (process.stderr.read() if process.stderr else "")
        assert "demo / demo" in process.stdout.readline()
        url = match.group(1)
        ready = time.monotonic()
        with httpx.Client(base_url=url) as client:
            token = CSRF.search(client.get("/login").text)
            assert token is not None
            client.post(
                "/login",
                data={"username": "demo", "password": "demo", "csrf_token": token.group(1)},
            )
            cases: list[object] = []
            while time.monotonic() - ready < 60 and not cases:
                cases = client.get("/api/v1/cases").json()["cases"]
                time.sleep(0.25)
            assert cases, "no flagged demo message within 60 s of the console being up"
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


async def _run_parts(
    settings: Settings, parts: Parts, body: Callable[[str], Awaitable[None]]
) -> None:
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
            parts=parts,
        )
    )
    try:
        await body(await asyncio.wait_for(ready, timeout=30))
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_each_role_runs_only_its_parts(tmp_path: Path, database_url: str) -> None:
    """`peerdesk console` serves the console and no platform; `peerdesk bot` runs the
    platforms (here the demo channel) and delivery but opens no port; `worker` neither."""
    from bot.store import Store

    settings = make_settings(tmp_path, database_url, PEERDESK_DEMO_INTERVAL_SECONDS="0.02")
    transcript = Path(settings.demo.transcript_path)

    async def console_only(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            health = (await client.get("/healthz")).json()
        assert health["status"] == "ok"
        assert health["platforms"] == {"demo": "in another process"}
        await asyncio.sleep(0.3)
        assert not transcript.exists()  # the demo channel did not start

    async def bot_only(url: str) -> None:
        assert url == ""
        store = Store(database_url)
        try:
            await _wait_for(store.list_cases)
        finally:
            await store.close()

    async def worker_only(url: str) -> None:
        assert url == ""

    await _run_parts(settings, CONSOLE, console_only)
    await _run_parts(settings, BOT, bot_only)
    await _run_parts(settings, WORKER, worker_only)


# -- two processes on one PostgreSQL database ----------------------------------------------

WEBHOOK_SECRET = "two-process-webhook-secret"
QUESTION = "waar kan ik mijn xtc pillen laten testen?"
GROUP = -100777


async def _cli(env: dict[str, str], cwd: Path, *args: str, stdin: bytes = b"") -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _events(client: httpx.AsyncClient, seen: list[dict[str, object]]) -> None:
    """Collect a console's live events (until cancelled)."""
    import json

    async with client.stream("GET", "/api/v1/events", timeout=None) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_processes_on_one_database_deliver_each_reply_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two `peerdesk run` processes share a PostgreSQL database, with Telegram in webhook
    mode (several consoles behind a proxy; Telegram allows one getUpdates consumer per
    token, so polling cannot be shared). Updates reach either console, some reach both (a
    retry landing on the other instance); replies are approved through both consoles at
    once. The fake Telegram server's record shows each reply delivered once and each
    update making at most one case; a case opened through one console shows up live on
    the other."""
    from tests.fake_telegram import TOKEN, FakeBotAPI

    replies = int(os.environ.get("PEERDESK_TEST_REPLIES", "100"))
    fake = FakeBotAPI()
    await fake.start()
    admin = FakeBotAPI.user(11, "Alex")
    fake.members[(GROUP, admin["id"])] = "administrator"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    env.update(
        PEERDESK_DATABASE_URL=postgres_url,
        PEERDESK_TELEGRAM_TOKEN=TOKEN,
        PEERDESK_TELEGRAM_BASE_URL=fake.base_url,
        PEERDESK_TELEGRAM_MODE="webhook",
        PEERDESK_TELEGRAM_WEBHOOK_URL="https://desk.example.org",
        PEERDESK_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE="lexical",
        PEERDESK_DETECTION_MODE="lexicon",
        PEERDESK_OUTBOX_POLL_SECONDS="0.2",
    )
    processes: list[asyncio.subprocess.Process] = []
    try:
        await _cli(env, tmp_path, "init")
        await _cli(env, tmp_path, "user", "add", "vera", "--role", "coordinator",
                   "--password-stdin", stdin=b"correct horse battery\n")  # fmt: skip
        token = (await _cli(env, tmp_path, "user", "token", "vera")).strip().split()[-1]
        urls = []
        for _ in range(2):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "run",
                "--port",
                "0",
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            processes.append(proc)
            assert proc.stdout is not None
            first = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            found = re.search(r"(http://\S+)", first)
            assert found, first
            urls.append(found.group(1))
        auth = {"Authorization": f"Bearer {token}"}
        hook = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        group = FakeBotAPI.group(GROUP)
        async with (
            httpx.AsyncClient(base_url=urls[0], headers=auth, timeout=30) as one,
            httpx.AsyncClient(base_url=urls[1], headers=auth, timeout=30) as two,
        ):
            consoles = (one, two)
            update_ids = iter(range(1, 10_000))

            async def deliver(console: httpx.AsyncClient, update: dict[str, object]) -> None:
                response = await console.post("/telegram/webhook", json=update, headers=hook)
                assert response.status_code == 200, response.text

            def update(user_id: int, text: str) -> dict[str, object]:
                user = FakeBotAPI.user(user_id, f"P{user_id}")
                return {"update_id": next(update_ids), "message": fake.message(group, user, text)}

            await deliver(one, {"update_id": next(update_ids),
                                "message": fake.message(group, admin, "/optin nl")})  # fmt: skip

            # Live across processes: a case opened through the first console is an event
            # on the second's stream.
            seen: list[dict[str, object]] = []
            listening = asyncio.create_task(_events(two, seen))
            await asyncio.sleep(1)  # the stream is open
            await deliver(one, update(500, QUESTION))
            await _wait_for(lambda: _async([e for e in seen if e["kind"] == "opened"]), 30)
            listening.cancel()

            # Many updates, spread over both consoles; one in five reaches both.
            updates = [update(1000 + n, QUESTION) for n in range(replies - 1)]
            started = time.monotonic()
            calls = [deliver(consoles[n % 2], u) for n, u in enumerate(updates)]
            calls += [deliver(consoles[(n + 1) % 2], u) for n, u in enumerate(updates[::5])]
            await asyncio.gather(*calls)
            ingest_seconds = time.monotonic() - started

            cases = (await one.get("/api/v1/cases", params={"limit": 1000})).json()["cases"]
            assert len(cases) == replies  # one per flagged update, redeliveries made none
            # In the shared database: each update stored once, each in its own case.
            per_case = await _pg_rows(
                postgres_url,
                "SELECT case_id, count(*) AS n, count(DISTINCT platform_message_id) AS d"
                " FROM messages WHERE case_id IS NOT NULL GROUP BY case_id",
            )
            assert len(per_case) == replies
            assert {(r["n"], r["d"]) for r in per_case} == {(1, 1)}
            stored = await _pg_rows(postgres_url, "SELECT count(*) AS n FROM messages")
            assert stored[0]["n"] == replies  # the /optin command is not kept

            # Every case answered, through both consoles at once.
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    consoles[n % 2].post(
                        f"/api/v1/cases/{c['id']}/replies",
                        json={
                            "text": f"Antwoord {c['id']}: testen kan anoniem.",
                            "visibility": "public",
                        },
                        headers={"Idempotency-Key": f"k{c['id']}"},
                    )
                    for n, c in enumerate(cases)
                )
            )
            assert [a.status_code for a in answers] == [201] * replies

            def answered() -> list[str]:
                return [m.text for m in fake.sent if m.text.startswith("Antwoord")]

            await _wait_for(lambda: _async(len(answered()) >= replies), 120)
            deliver_seconds = time.monotonic() - started
            await asyncio.sleep(2)  # a second delivery would show up by now
            texts = answered()
            assert sorted(texts) == sorted(
                f"Antwoord {c['id']}: testen kan anoniem." for c in cases
            )
            assert len(texts) == len(set(texts)) == replies
            print(
                f"\n{replies} updates over 2 consoles in {ingest_seconds:.1f}s; "
                f"{replies} replies approved and delivered once in {deliver_seconds:.1f}s"
            )
    finally:
        for proc in processes:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
        errors = []
        for proc in processes:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            errors.append((proc.returncode, err.decode()))
        await fake.stop()
    for code, err in errors:
        assert code == 0, err
        assert TOKEN not in err


async def _async(value: T) -> T:
    return value


async def _pg_rows(url: str, sql: str) -> list[dict[str, object]]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.postgres
async def test_bot_consoles_and_worker_as_separate_processes(
    tmp_path: Path, postgres_url: str
) -> None:
    """`peerdesk bot` (Telegram by polling: one getUpdates consumer per token), two
    `peerdesk console` processes and a `peerdesk worker` on one database: questions
    become cases, replies approved on both consoles leave through the bot once each."""
    from tests.fake_telegram import TOKEN, FakeBotAPI

    replies = 20
    fake = FakeBotAPI()
    await fake.start()
    admin = FakeBotAPI.user(11, "Alex")
    fake.members[(GROUP, admin["id"])] = "administrator"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    env.update(
        PEERDESK_DATABASE_URL=postgres_url,
        PEERDESK_TELEGRAM_TOKEN=TOKEN,
        PEERDESK_TELEGRAM_BASE_URL=fake.base_url,
        PEERDESK_TELEGRAM_POLL_TIMEOUT="1",
        PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE="lexical",
        PEERDESK_DETECTION_MODE="lexicon",
        PEERDESK_OUTBOX_POLL_SECONDS="0.2",
    )
    processes: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args, cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        processes.append(proc)
        assert proc.stdout is not None
        return (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()

    try:
        await _cli(env, tmp_path, "init")
        await _cli(env, tmp_path, "user", "add", "vera", "--role", "coordinator",
                   "--password-stdin", stdin=b"correct horse battery\n")  # fmt: skip
        token = (await _cli(env, tmp_path, "user", "token", "vera")).strip().split()[-1]
        assert "peerdesk bot is running (no console)" in await start("bot")
        assert "peerdesk worker is running (no console)" in await start("worker")
        urls = []
        for _ in range(2):
            found = re.search(r"(http://\S+)", await start("console", "--port", "0"))
            assert found
            urls.append(found.group(1))
        group = FakeBotAPI.group(GROUP)
        fake.say(group, admin, "/optin nl")
        for n in range(replies):
            fake.say(group, FakeBotAPI.user(2000 + n, f"P{n}"), QUESTION)
        auth = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=urls[0], headers=auth, timeout=30) as one,
            httpx.AsyncClient(base_url=urls[1], headers=auth, timeout=30) as two,
        ):
            health = (await one.get("/healthz")).json()
            assert health["status"] == "ok"

            async def all_cases() -> list[dict[str, object]] | None:
                cases = (await two.get("/api/v1/cases")).json()["cases"]
                return cases if len(cases) == replies else None

            cases = await _wait_for(all_cases, 60)
            consoles = (one, two)
            answers = await asyncio.gather(
                *(
                    consoles[n % 2].post(
                        f"/api/v1/cases/{c['id']}/replies",
                        json={"text": f"Antwoord {c['id']}", "visibility": "public"},
                    )
                    for n, c in enumerate(cases)
                )
            )
            assert [a.status_code for a in answers] == [201] * replies

            def answered() -> list[str]:
                return [m.text for m in fake.sent if m.text.startswith("Antwoord")]

            await _wait_for(lambda: _async(len(answered()) >= replies), 60)
            await asyncio.sleep(2)
            assert sorted(answered()) == sorted(f"Antwoord {c['id']}" for c in cases)
        assert len([c for c in fake.calls_of("getUpdates")]) > 0
    finally:
        for proc in processes:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
        errors = []
        for proc in processes:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            errors.append((proc.returncode, err.decode()))
        await fake.stop()
    for code, err in errors:
        assert code == 0, err

"""Odd and hostile input: each gets a clear outcome (kept and shown safely, or refused with
a clear answer), nothing stops the process, and the next ordinary message still gets in.

Chat updates go through the real Telegram webhook endpoint (python-telegram-bot parses
them, the real pipeline stores them, the console shows them); broken configuration goes
through `peerdesk run`'s own entry point."""

from __future__ import annotations

import asyncio
import copy
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

import bot.schema as t
from bot.cli import main
from bot.models import ChannelRef
from bot.pipeline import MAX_TEXT_CHARS
from bot.runtime import Runtime
from bot.settings import Secret, TelegramSettings
from bot.telegram_adapter import TelegramAdapter
from console.app import create_app
from tests.conftest import add_user, login
from tests.fake_telegram import TOKEN, FakeBotAPI
from tests.fakes import opt_in

GROUP = FakeBotAPI.group(-100_4242)
PERSON = FakeBotAPI.user(77, "Robin")
SECRET = "bad-input-secret"
HOOK = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}


def _update(update_id: int, text: Any, **message: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": 10_000 + update_id,
        "date": 1_790_000_000,
        "chat": GROUP,
        "from": PERSON,
        "text": text,
        **message,
    }
    return {"update_id": update_id, "message": body}


def _raw(update_id: int, text_json: str) -> bytes:
    """An update whose text is given as raw JSON (for escapes json.dumps never writes)."""
    body = json.dumps(_update(update_id, "PLACEHOLDER"))
    return body.replace('"PLACEHOLDER"', text_json).encode()


def _nested(depth: int) -> bytes:
    """An update whose message replies to a message replying to ... ``depth`` deep."""
    chat = json.dumps(GROUP)
    head = f'{{"message_id": 1, "date": 1790000000, "chat": {chat}, "reply_to_message": '
    inner = f'{{"message_id": 2, "date": 1790000000, "chat": {chat}}}'
    message = head * depth + inner + "}" * depth
    return _raw(1, '"xtc?"').replace(
        b'"text": "xtc?"', f'"text": "xtc?", "reply_to_message": {message}'.encode()
    )


ZALGO = "x" + "\u0336\u0334\u0337" * 300 + "tc met alcohol"
EMOJI = "\U0001f48a" * 10_000

# (name, body, expected HTTP status, what is stored: None for nothing, or the text)
CORPUS: list[tuple[str, bytes, int, str | None]] = [
    ("empty text", json.dumps(_update(1, "")).encode(), 200, None),
    ("whitespace only", json.dumps(_update(2, " \n\t \u00a0")).encode(), 200, " \n\t \u00a0"),
    (
        "100k characters",
        json.dumps(_update(3, "xtc " * 25_000)).encode(),
        200,
        ("xtc " * 2_000)[:MAX_TEXT_CHARS] + "…",
    ),
    (
        "over 4096 UTF-16 units",
        json.dumps(_update(4, "xtc \U0001f600" * 1_500)).encode(),
        200,
        "xtc \U0001f600" * 1_500,
    ),
    (
        "NUL and control characters",
        json.dumps(_update(5, "xtc\x00 en\x07 alcohol\x1b[31m\r\x7f")).encode(),
        200,
        "xtc en\x07 alcohol\x1b[31m\r\x7f",
    ),
    ("lone high surrogate", _raw(6, '"xtc \\ud800 en alcohol"'), 200, "xtc \ufffd en alcohol"),
    ("lone low surrogate", _raw(7, '"\\udc00xtc"'), 200, "\ufffdxtc"),
    ("escaped surrogate pair", _raw(8, '"xtc \\ud83d\\ude00"'), 200, "xtc \U0001f600"),
    (
        "RTL override",
        json.dumps(_update(9, "xtc \u202egnippirt\u202c")).encode(),
        200,
        "xtc \u202egnippirt\u202c",
    ),
    ("zalgo", json.dumps(_update(10, ZALGO)).encode(), 200, ZALGO),
    ("10k emoji", json.dumps(_update(11, EMOJI)).encode(), 200, EMOJI[:MAX_TEXT_CHARS] + "…"),
    (
        "markup and script",
        json.dumps(_update(12, "<script>alert(1)</script> xtc")).encode(),
        200,
        "<script>alert(1)</script> xtc",
    ),
    ("invalid UTF-8 bytes", b'{"update_id": 13, "message": {"text": "\xff\xfe xtc"}}', 400, None),
    ("not JSON", b"{not json", 400, None),
    ("empty body", b"", 400, None),
    ("a JSON list", b"[1, 2, 3]", 400, None),
    ("deeply nested brackets", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("deeply nested replies", _nested(5_000), 400, None),
    ("only an update id", b'{"update_id": 14}', 200, None),
    ("no update id", json.dumps({"message": _update(15, "xtc")["message"]}).encode(), 400, None),
    (
        "message without chat",
        json.dumps(
            {"update_id": 16, "message": {"message_id": 1, "date": 1_790_000_000, "text": "xtc"}}
        ).encode(),
        400,
        None,
    ),
    ("text is a number", json.dumps(_update(17, 12345)).encode(), 400, None),
    ("text is an object", json.dumps(_update(18, {"a": 1})).encode(), 400, None),
    (
        "chat is a string",
        json.dumps(
            {"update_id": 19, "message": {**_update(19, "xtc")["message"], "chat": "x"}}
        ).encode(),
        400,
        None,
    ),
    (
        "update id is a string",
        json.dumps({**_update(20, "xtc"), "update_id": "abc"}).encode(),
        200,  # a webhook does not use it
        "xtc",
    ),
    (
        "huge user id",
        json.dumps(_update(21, "xtc en alcohol?", **{"from": {**PERSON, "id": 10**30}})).encode(),
        200,
        "xtc en alcohol?",
    ),
    (
        "huge message id",
        json.dumps(
            {
                **_update(22, "xtc?"),
                "message": {**_update(22, "xtc?")["message"], "message_id": 10**30},
            }
        ).encode(),
        200,
        "xtc?",
    ),
    (
        "a malformed poll",
        json.dumps({"update_id": 23, "poll": {"id": "1"}}).encode(),
        400,
        None,
    ),
    (
        "an update type from the future",
        json.dumps({"update_id": 26, "frobnication": {"id": 1}}).encode(),
        200,
        None,
    ),
    (
        "a sticker without text",
        json.dumps(
            {
                "update_id": 24,
                "message": {
                    **_update(24, None)["message"],
                    "sticker": {
                        "file_id": "x",
                        "file_unique_id": "y",
                        "width": 1,
                        "height": 1,
                        "is_animated": False,
                        "is_video": False,
                        "type": "regular",
                    },
                },
            }
        ).encode(),
        200,
        None,
    ),
    (
        "a photo with a caption",
        json.dumps(
            {
                "update_id": 25,
                "message": {
                    **_update(25, None)["message"],
                    "caption": "is dit xtc?",
                    "photo": [{"file_id": "x", "file_unique_id": "y", "width": 1, "height": 1}],
                },
            }
        ).encode(),
        200,
        "is dit xtc?",
    ),
]


@pytest.fixture
async def hook(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, TelegramAdapter]]:
    """The console with Telegram in webhook mode (against a fake Bot API), the group in."""
    fake = FakeBotAPI()
    await fake.start()
    adapter = TelegramAdapter(
        TelegramSettings(
            token=Secret(TOKEN),
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            mode="webhook",
            webhook_url="https://desk.example.org",
        ),
        webhook_secret=SECRET,
    )
    await adapter.start(runtime.pipeline)
    runtime.adapters["telegram"] = adapter
    await runtime.pipeline.opt_in(opt_in(ChannelRef("telegram", str(GROUP["id"]), "Group")))
    transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
            yield c, adapter
    finally:
        await adapter.stop()
        await fake.stop()


async def _stored(rt: Runtime) -> dict[str, str]:
    async with rt.store.engine.connect() as conn:
        rows = (
            await conn.execute(sa.select(t.messages.c.platform_message_id, t.messages.c.text))
        ).all()
    return {r.platform_message_id: r.text for r in rows}


async def test_odd_updates_each_get_a_clear_outcome_and_block_nothing(
    runtime: Runtime, hook: tuple[httpx.AsyncClient, TelegramAdapter]
) -> None:
    client, _ = hook
    outcomes = {}
    for name, body, _, _ in CORPUS:
        response = await client.post("/telegram/webhook", content=body, headers=HOOK)
        outcomes[name] = response.status_code
    expected = {name: status for name, _, status, _ in CORPUS}
    assert outcomes == expected, {
        n: (outcomes[n], s) for n, s in expected.items() if outcomes[n] != s
    }

    stored = await _stored(runtime)
    by_text = sorted(stored.values())
    assert by_text == sorted(text for _, _, _, text in CORPUS if text is not None)

    # The next ordinary question still gets in, and opens its case.
    after = json.dumps(_update(99, "is xtc met alcohol gevaarlijk?")).encode()
    assert (await client.post("/telegram/webhook", content=after, headers=HOOK)).status_code == 200
    assert "is xtc met alcohol gevaarlijk?" in (await _stored(runtime)).values()

    # Every case with odd text renders, escaped.
    await add_user(runtime, "vera")
    await login(client, "vera")
    cases = await runtime.store.list_cases(limit=1000)
    assert cases  # one person in one group: their messages make one thread
    pages = [await client.get(f"/cases/{case.id}") for case in cases]
    assert [p.status_code for p in pages] == [200] * len(cases)
    assert not any("<script>alert(1)</script>" in p.text for p in pages)
    assert any("&lt;script&gt;alert(1)&lt;/script&gt; xtc" in p.text for p in pages)
    assert (await client.get("/queue")).status_code == 200


# -- broken configuration ---------------------------------------------------------------------

CONFIGS: list[tuple[str, str, dict[str, str], str]] = [
    ("invalid TOML", "[console\nport = 1\n", {}, "not valid TOML"),
    ("unknown key", "[outbox]\nlease_secs = 5\n", {}, "outbox.lease_secs"),
    ("unknown section", "[outbx]\nlease_seconds = 5\n", {}, "outbx"),
    ("wrong type", '[outbox]\nlease_seconds = "soon"\n', {}, "outbox.lease_seconds"),
    ("out of range", "[outbox]\nlease_seconds = 0\n", {}, "outbox.lease_seconds"),
    ("bad choice", '[telegram]\nmode = "carrier pigeon"\n', {}, "telegram.mode"),
    (
        "bad environment value",
        "",
        {"PEERDESK_OUTBOX_MAX_ATTEMPTS": "many"},
        "PEERDESK_OUTBOX_MAX_ATTEMPTS",
    ),
    (
        "webhook mode without its public address",
        '[telegram]\nmode = "webhook"\n',
        {"PEERDESK_TELEGRAM_TOKEN": TOKEN},
        "telegram.webhook_url",
    ),
]


@pytest.mark.parametrize(
    ("body", "env", "names"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS]
)
def test_peerdesk_run_refuses_a_broken_configuration_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, env: dict[str, str], names: str
) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("PEERDESK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PEERDESK_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "peerdesk.toml"
    config.write_text(body, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", "--port", "0", "--config", str(config)], stdout=out, stderr=err)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("peerdesk:")]
    assert code != 0
    assert len(lines) == 1, err.getvalue()
    assert names in lines[0]
    assert "Traceback" not in err.getvalue()
    assert TOKEN not in err.getvalue()
    assert "is running" not in out.getvalue()


async def test_a_malformed_update_by_polling_is_skipped_not_retried_forever(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeBotAPI()
    await fake.start()
    adapter = TelegramAdapter(
        TelegramSettings(
            token=Secret(TOKEN), base_url=fake.base_url, base_file_url=fake.base_file_url,
            poll_timeout=1, request_timeout=2.0,
        )
    )  # fmt: skip
    adapter.retry_seconds = 0.05
    await runtime.pipeline.opt_in(opt_in(ChannelRef("telegram", str(GROUP["id"]), "Group")))
    try:
        fake.push("message", _update(1, 12345)["message"])
        fake.say(GROUP, PERSON, "is xtc met alcohol gevaarlijk?")
        await adapter.start(runtime.pipeline)

        async def stored() -> bool:
            return "is xtc met alcohol gevaarlijk?" in (await _stored(runtime)).values()

        async with asyncio.timeout(10):
            while not await stored():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # Skipped with a clear line, and the offset moved past it.
        assert "Telegram update 1 skipped: a message whose text is not text" in caplog.text
        assert adapter.offset is not None and adapter.offset > 1
    finally:
        await adapter.stop()
        await fake.stop()


# -- fuzzed updates -------------------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**70,
    1.5,
    "",
    "x" * 5000,
    "\u202e\u0000\ufeff",
    [],
    [1, "a", None],
    {},
    {"id": "not a number"},
]
UPDATE_KINDS = ["message", "edited_message", "channel_post", "my_chat_member", "poll", "zzz"]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON value."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    return found


def _mutated(rng: Any, update_id: int) -> bytes:
    """A valid update with one to three things broken: a field removed, a value of the
    wrong type or size, an unknown update kind, a key renamed."""
    # A deep copy: the shared GROUP and PERSON must come out of this unharmed.
    update: dict[str, Any] = copy.deepcopy(
        _update(update_id, rng.choice(["xtc?", "hoi", "🍄" * 3, ""]))
    )
    for _ in range(rng.randint(1, 3)):
        paths = _paths(update)
        if not paths:
            break
        path = rng.choice(paths)
        parent: Any = update
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        action = rng.randrange(4)
        if action == 0:
            del parent[path[-1]]
        elif action == 1:
            parent[path[-1]] = rng.choice(ODD_VALUES)
        elif action == 2 and "message" in update:
            update[rng.choice(UPDATE_KINDS)] = update.pop("message")
        else:
            parent[str(path[-1]) + "_x"] = parent.pop(path[-1])
    return json.dumps(update).encode()


async def test_hundreds_of_fuzzed_updates_get_200_or_400_and_block_nothing(
    runtime: Runtime, hook: tuple[httpx.AsyncClient, TelegramAdapter]
) -> None:
    """400 updates broken at random (a fixed seed, so every run sends the same ones):
    each is taken (200) or refused as malformed (400), never a server error, and the
    console and the next ordinary message are unaffected."""
    import random

    client, _ = hook
    rng = random.Random(20261124)
    statuses: dict[int, int] = {}
    for n in range(400):
        response = await client.post(
            "/telegram/webhook", content=_mutated(rng, 1000 + n), headers=HOOK
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    print(f"\nfuzzed updates by answer: {statuses}")
    assert set(statuses) <= {200, 400}, statuses
    assert statuses.get(200, 0) > 50 and statuses.get(400, 0) > 50  # both paths were taken
    after = json.dumps(_update(5000, "is xtc met alcohol gevaarlijk?")).encode()
    assert (await client.post("/telegram/webhook", content=after, headers=HOOK)).status_code == 200
    assert "is xtc met alcohol gevaarlijk?" in (await _stored(runtime)).values()
    await add_user(runtime, "vera")
    await login(client, "vera")
    assert (await client.get("/queue")).status_code == 200
    for case in await runtime.store.list_cases(limit=1000):
        assert (await client.get(f"/cases/{case.id}")).status_code == 200

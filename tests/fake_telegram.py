"""A fake Telegram Bot API server on 127.0.0.1, for driving the real python-telegram-bot.

It speaks the Bot API's HTTP shape (``POST /bot<token>/<method>``, form-encoded or JSON
parameters, ``{"ok": ..., "result": ...}`` answers), keeps a queue of updates served by
long polling with offsets, records every call and every message the bot sent, and can
be told to misbehave: answer 429 with ``retry_after``, answer 5xx, hang past the
client's timeout, or drop the connection (before or after it took the message), or
hold its answer after taking the message (so a test can kill the bot in that window).
Faults are queued per method with :meth:`FakeBotAPI.fail`, or drawn for every call by a
``plan`` (a function of the call, for seeded random fault injection).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token-for-the-fake-server"
BOT_ID = 123456
BOT_USERNAME = "peerdesk_test_bot"
ANONYMOUS_ADMIN_ID = 1087968824  # Telegram's "GroupAnonymousBot"


@dataclass
class Fault:
    """What to do instead of answering one call. ``kind``: 429, 500, 502, hang, drop
    (close the connection before acting), drop_after (act, then close it), hold_after
    (act, then keep the answer until :attr:`FakeBotAPI.release` is set), or any other
    error code such as 400 or 403 (answered with ``description``)."""

    kind: str
    retry_after: int = 1
    seconds: float = 30.0
    description: str = "Bad Request: refused by the test"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    fault: Fault | None = None


@dataclass
class SentMessage:
    message_id: int
    chat_id: int
    text: str
    reply_to: int | None
    params: dict[str, Any] = field(repr=False)


def _decode(value: Any) -> Any:
    """Form values arrive as strings; nested objects as JSON text."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class FakeBotAPI:
    """The server. Start with :meth:`start` (binds a free port), stop with :meth:`stop`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.members: dict[tuple[int, int], str] = {}  # (chat, user) -> status
        self.started_bot: set[int] = set()  # users who opened a private chat with the bot
        self.gone_chats: set[int] = set()  # groups the bot was removed from
        self.webhook: dict[str, Any] | None = None
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._new_update = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.confirmed_offset = 0
        self.last_served = 0  # the highest update id handed out by getUpdates
        self.batches_served = 0  # getUpdates answers that handed out updates
        self.plan: Callable[[Call], Fault | None] | None = None
        self.held = asyncio.Event()  # a hold_after fault has taken a message
        self.release = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self.release.set()
        async with self._new_update:
            self._new_update.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what tests set up -------------------------------------------------------------

    def fail(self, method: str, *faults: Fault) -> None:
        """Make the next calls of ``method`` misbehave, one fault per call."""
        self.faults.setdefault(method, deque()).extend(faults)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @staticmethod
    def user(user_id: int, first_name: str = "Sam", username: str | None = None) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        return user

    @staticmethod
    def group(chat_id: int, title: str = "Party people") -> dict[str, Any]:
        return {"id": chat_id, "type": "supergroup", "title": title}

    @staticmethod
    def private(user: dict[str, Any]) -> dict[str, Any]:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    def message(
        self,
        chat: dict[str, Any],
        user: dict[str, Any] | None,
        text: str | None,
        *,
        reply_to: int | None = None,
        message_id: int | None = None,
        date: int = 1_790_000_000,
        **extra: Any,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": message_id if message_id is not None else next(self._message_ids),
            "date": date,
            "chat": chat,
            **extra,
        }
        if user is not None:
            msg["from"] = user
        if text is not None:
            msg["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            msg["reply_to_message"] = {"message_id": reply_to, "date": date, "chat": chat}
        if chat["type"] == "private" and user is not None:
            self.started_bot.add(user["id"])
        return msg

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (``kind`` is its field: message, edited_message, ...)."""
        update = {"update_id": next(self._update_ids), kind: payload}
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update

    def say(self, chat: dict[str, Any], user: dict[str, Any], text: str, **kw: Any) -> int:
        """Queue a new message update; returns its message id."""
        msg = self.message(chat, user, text, **kw)
        self.push("message", msg)
        return int(msg["message_id"])

    def pending_updates(self) -> int:
        return len(self._updates)

    async def _notify(self) -> None:
        async with self._new_update:
            self._new_update.notify_all()

    # -- the API ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        if request.content_type == "application/json":
            raw = await request.json() if request.can_read_body else {}
        else:
            raw = dict(await request.post())
        params = {k: _decode(v) for k, v in raw.items()}
        call = Call(method, params)
        self.calls.append(call)
        fault = self.faults.get(method, deque()).popleft() if self.faults.get(method) else None
        if fault is None and self.plan is not None:
            fault = self.plan(call)
        call.fault = fault
        if fault is not None:
            if fault.kind == "429":
                return self._error(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    parameters={"retry_after": fault.retry_after},
                )
            if fault.kind in ("500", "502"):
                return self._error(int(fault.kind), "Internal Server Error")
            if fault.kind == "hang":
                await asyncio.sleep(fault.seconds)
            if fault.kind == "drop":
                return self._drop(request)
            if fault.kind.isdigit():
                return self._error(int(fault.kind), fault.description)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        response: web.StreamResponse = await handler(params)
        if fault is not None and fault.kind == "drop_after":
            return self._drop(request)
        if fault is not None and fault.kind == "hold_after":
            self.held.set()
            await self.release.wait()
        return response

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=500)  # never reaches the client

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(code: int, description: str, **extra: Any) -> web.Response:
        body = {"ok": False, "error_code": code, "description": description, **extra}
        return web.json_response(body, status=code)

    async def _api_getMe(self, params: dict[str, Any]) -> web.Response:
        return self._ok(
            {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "peerdesk",
                "username": BOT_USERNAME,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    async def _api_getUpdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        if offset:
            # Telegram forgets every update below the offset: they are confirmed.
            self.confirmed_offset = max(self.confirmed_offset, offset)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if not self._updates and timeout:
            async with self._new_update:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_update.wait(), timeout)
        served = self._updates[:limit]
        if served:
            self.last_served = max(self.last_served, served[-1]["update_id"])
            self.batches_served += 1
        return self._ok(served)

    async def _api_sendMessage(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        if chat_id in self.gone_chats:
            return self._error(403, "Forbidden: bot was kicked from the supergroup chat")
        if chat_id > 0 and chat_id not in self.started_bot:
            return self._error(403, "Forbidden: bot can't initiate conversation with a user")
        if chat_id == 0:
            return self._error(400, "Bad Request: chat not found")
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        text = str(params["text"])
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._error(400, "Bad Request: message is too long")
        message_id = next(self._message_ids)
        self.sent.append(
            SentMessage(message_id, chat_id, text, int(reply_to) if reply_to else None, params)
        )
        chat = (
            {"id": chat_id, "type": "private", "first_name": "x"}
            if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "x"}
        )
        return self._ok(
            {
                "message_id": message_id,
                "date": 1_790_000_000,
                "chat": chat,
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "peerdesk"},
                "text": text,
            }
        )

    async def _api_getChatMember(self, params: dict[str, Any]) -> web.Response:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        status = self.members.get((chat_id, user_id), "member")
        result: dict[str, Any] = {"status": status, "user": self.user(user_id)}
        if status == "administrator":
            result.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
            )
        elif status == "creator":
            result.update(is_anonymous=False)
        return self._ok(result)

    async def _api_setWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = params
        return self._ok(True)

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = None
        return self._ok(True)

    async def _api_close(self, params: dict[str, Any]) -> web.Response:
        return self._ok(True)

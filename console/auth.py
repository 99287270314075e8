"""Who is asking: session cookies for people, bearer tokens for scripts; CSRF; throttling.

Roles are enforced here, in one place: routes declare the roles they accept with
:func:`require`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, status

from bot import sessions
from bot.models import Role, User
from bot.passwords import token_hash
from bot.runtime import Runtime
from console import i18n

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ALL_ROLES = frozenset(Role)


class LoginRequired(Exception):
    """Raised for a page that needs a login; the app turns it into a redirect."""


def runtime(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get("csrf")
    if not (
        isinstance(expected, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(expected, submitted)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, i18n.N_("missing or wrong CSRF token"))


def _ended(request: Request, user: User) -> bool:
    """Whether this session began before the account was deactivated (bot/people.py)."""
    if user.sessions_after is None:
        return False
    began = request.session.get("at")
    return not isinstance(began, float | int) or began < user.sessions_after.timestamp()


async def authenticate(request: Request) -> User | None:
    """The user behind a bearer token or the session cookie, if any."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = await runtime(request).store.user_for_token(token_hash(header[7:].strip()))
        if user is None or not user.active:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                i18n.N_("invalid token"),
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.via = "bearer"
        i18n.use(user.language)
        return user
    uid = request.session.get("uid")
    if not isinstance(uid, int):
        return None
    user = await runtime(request).store.get_user(uid)
    sid = request.session.get("sid")
    if (
        user is None
        or not user.active
        or _ended(request, user)
        or not isinstance(sid, str)  # sessions always carry one since logout ends them
        or await sessions.ended(runtime(request).store, sid)
    ):
        request.session.clear()
        return None
    request.state.via = "session"
    i18n.use(user.language)  # their saved choice wins over the browser's
    return user


def require(*roles: Role, page: bool = False) -> Callable[[Request], Awaitable[User]]:
    """A dependency admitting the given roles (all roles when none are named).

    Pages redirect to the login form; API calls answer 401. A session-authenticated
    request that changes state must carry the CSRF token (form field or header).
    """
    allowed = frozenset(roles) or ALL_ROLES

    async def dependency(request: Request) -> User:
        user = await authenticate(request)
        if user is None:
            if page:
                raise LoginRequired()
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                i18n.N_("log in or send a bearer token"),
                headers={"WWW-Authenticate": "Bearer"},
            )
        if user.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, i18n.N_("your role may not do this"))
        if request.method not in SAFE_METHODS and request.state.via == "session":
            submitted = request.headers.get(CSRF_HEADER)
            if submitted is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                form = await request.form()
                value = form.get(CSRF_FIELD)
                submitted = value if isinstance(value, str) else None
            check_csrf(request, submitted)
        return user

    return dependency


class LoginThrottle:
    """Refuses logins after too many failures for one username or one client address."""

    def __init__(self, *, max_failures: int = 5, window_seconds: float = 900.0) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}

    #: Keys remembered at most; past that, those whose failures are all old are dropped
    #: (a flood of made-up usernames must not grow memory without end).
    max_keys = 10_000

    def _recent(self, key: str, now: float) -> deque[float]:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            self._forget_old(now)
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def _forget_old(self, now: float) -> None:
        stale = [k for k, t in self._failures.items() if not t or now - t[-1] > self.window]
        for k in stale:
            del self._failures[k]
        if len(self._failures) >= self.max_keys:  # all recent: drop the oldest half
            oldest = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for k in oldest[: len(oldest) // 2]:
                del self._failures[k]

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

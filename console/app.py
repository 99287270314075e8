"""The console's ASGI application: pages, the JSON API, health, security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.adapter import WebhookHandler
from bot.runtime import Runtime
from bot.store import NotFound
from console import (
    account,
    answers,
    api,
    detection_pages,
    faq_pages,
    i18n,
    language,
    notes,
    pages,
    queue,
)
from console import channels as channel_pages
from console import people as people_pages
from console.audit import router as audit_router
from console.auth import LoginRequired, LoginThrottle
from console.reports import router as reports_router

VERSION = "0.1.0"

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    """Adds the security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


# Telegram's updates are a few kilobytes; anything far bigger is not from Telegram.
MAX_WEBHOOK_BYTES = 1024 * 1024


def _webhook_endpoint(handler: WebhookHandler) -> Callable[[Request], Awaitable[Response]]:
    """A platform's webhook route: the adapter checks the call and says how to answer."""

    async def endpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return Response(status_code=413)
        code = await handler({k.lower(): v for k, v in request.headers.items()}, body)
        return Response(status_code=code)

    return endpoint


def create_app(rt: Runtime) -> FastAPI:
    """Build the console for a running :class:`~bot.runtime.Runtime`."""
    app = FastAPI(
        title="peerdesk",
        version=VERSION,
        description="The peerdesk console's JSON API.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.login_throttle = LoginThrottle()

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """Liveness and database reachability, for monitoring and load balancers."""
        body: dict[str, Any] = {
            "status": "ok",
            "version": VERSION,
            "demo": rt.demo is not None,
            "adapters": sorted(rt.adapters),
            "platforms": {
                name: "in another process" if name in rt.elsewhere else a.state()
                for name, a in sorted(rt.adapters.items())
            },
            "started_at": rt.started_at.isoformat(),
        }
        if rt.degraded:
            # Working, in a lesser mode: 200 for load balancers, the reasons for operators.
            body.update(status="degraded", degraded=rt.degraded)
        try:
            await rt.store.ping()
            body["database"] = "ok"
        except Exception as exc:
            body.update(status="error", database=f"unreachable: {type(exc).__name__}")
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    for adapter in rt.adapters.values():
        for path, handler in adapter.webhooks():
            app.add_api_route(
                path, _webhook_endpoint(handler), methods=["POST"], include_in_schema=False
            )

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_html(request):
            return pages.templates.TemplateResponse(
                request,
                "error.html",
                {
                    "code": exc.status_code,
                    # Details marked with i18n.N_ are in the catalogues; the API keeps English.
                    "message": i18n.gettext(exc.detail)
                    if isinstance(exc.detail, str)
                    else exc.detail,
                    "user": None,
                    "flash": None,
                },
                status_code=exc.status_code,
            )
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return await http_error(request, HTTPException(404, str(exc)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(queue.router)
    app.include_router(faq_pages.router)
    app.include_router(detection_pages.router)
    app.include_router(notes.router)
    app.include_router(answers.router)
    app.include_router(reports_router)
    app.include_router(audit_router)
    app.include_router(language.router)
    app.include_router(people_pages.router)
    app.include_router(channel_pages.router)
    app.include_router(account.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), "static")
    app.add_middleware(i18n.LanguageMiddleware)  # inside the session: it reads the choice
    app.add_middleware(
        SessionMiddleware,
        secret_key=rt.session_key,
        session_cookie="peerdesk_session",
        max_age=rt.settings.console.session_hours * 3600,
        same_site="lax",
        https_only=rt.settings.console.cookie_secure,
    )
    app.add_middleware(SecurityHeaders)
    return app

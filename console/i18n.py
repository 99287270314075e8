"""The console's interface languages: Dutch, French and English.

Interface text is written in English in the templates (``{{ _("...") }}``, ``{% trans %}``)
and in the code (:func:`gettext`); the Dutch and French catalogues live in
``console/locale/<language>/LC_MESSAGES/messages.po`` and are compiled to ``.mo`` files
next to them (``scripts/i18n``, ``docs/console.md``). Chat text, FAQ entries and other
data are never translated.

The language of a request is kept in a context variable, so the same ``gettext`` serves
the templates and the routes' flash messages: :class:`LanguageMiddleware` sets it from the
session's choice or else the browser's ``Accept-Language``, and
:func:`console.auth.authenticate` overrides it with the logged-in user's saved choice.
"""

from __future__ import annotations

import functools
import gettext as _gettext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import jinja2
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

#: The interface languages, each named in itself (as the language switch shows them).
LANGUAGES: dict[str, str] = {"en": "English", "nl": "Nederlands", "fr": "Français"}
DEFAULT = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
#: Where the session keeps a choice made before logging in (or by an anonymous visitor).
SESSION_KEY = "language"

_language: ContextVar[str] = ContextVar("peerdesk_console_language", default=DEFAULT)


@functools.cache
def catalogue(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of ``language`` (English: the text as written)."""
    if language == DEFAULT:
        return _gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with path.open("rb") as handle:
        return _gettext.GNUTranslations(handle)


def current() -> str:
    """The language of the request being handled."""
    return _language.get()


def use(language: str | None) -> None:
    """Answer the rest of this request in ``language`` (ignored when not one of ours)."""
    if language in LANGUAGES:
        _language.set(language)


def _lookup(message: str) -> str:
    if not message:  # gettext("") is the catalogue's header
        return message
    return catalogue(current()).gettext(message)


def _nlookup(singular: str, plural: str, n: int) -> str:
    return catalogue(current()).ngettext(singular, plural, n)


def gettext(message: str, **variables: Any) -> str:
    """``message`` in the request's language, with ``%(name)s`` placeholders filled in."""
    text = _lookup(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form for ``n`` in the request's language; ``%(num)d`` is n."""
    return _nlookup(singular, plural, n) % {"num": n, **variables}


def N_(message: str) -> str:
    """Marks text for the catalogues without translating it here: it is translated where
    it is shown (an error's detail is English in the JSON API, translated on a page)."""
    return message


#: Data values the templates show through ``_(value)``: roles, statuses, visibilities.
VALUE_NAMES = (
    N_("volunteer"),
    N_("expert"),
    N_("coordinator"),
    N_("open"),
    N_("answered"),
    N_("dismissed"),
    N_("all"),
    N_("public"),
    N_("private"),
    N_("queued"),
    N_("sent"),
    N_("failed"),
    N_("draft"),
    N_("in review"),
    N_("published"),
    N_("expired"),
    N_("term"),
    N_("urgent"),
    N_("false friend"),
)


def negotiate(accept_language: str | None) -> str | None:
    """The best of our languages for an ``Accept-Language`` header (RFC 9110 §12.5.4),
    by quality then order; ``nl-BE`` counts as ``nl``. None when none fits."""
    best: tuple[float, int, str] | None = None
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().split("-")[0].casefold()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().casefold() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if primary not in LANGUAGES or quality <= 0:
            continue
        candidate = (-quality, position, primary)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best else None


class LanguageMiddleware:
    """Sets the request's language: the session's choice, else the browser's preference,
    else English. Runs inside the session middleware (it reads ``scope["session"]``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chosen = scope.get("session", {}).get(SESSION_KEY)
        if chosen not in LANGUAGES:
            chosen = negotiate(Headers(scope=scope).get("accept-language")) or DEFAULT
        token = _language.set(chosen)
        try:
            await self.app(scope, receive, send)
        finally:
            _language.reset(token)


def install(env: jinja2.Environment) -> None:
    """Give templates ``_``, ``gettext``, ``ngettext`` (new style: ``%(name)s`` filled
    from keyword arguments, autoescaped) and the request's language."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _lookup, _nlookup, newstyle=True
    )
    env.globals["current_language"] = current
    env.globals["LANGUAGES"] = LANGUAGES

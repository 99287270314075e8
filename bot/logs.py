"""Logging for the `peerdesk` command: one format, and no secret ever in a log line.

Libraries log what they see: httpx logs every request URL, and a Telegram bot token is
part of every Bot API URL. A filter on the handler replaces each configured secret with
``***`` before a line is written, whoever logged it; httpx's per-request lines are
turned down to warnings as well (a poll a second is noise).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import TextIO

from bot.settings import Secret, Settings

QUIET_LIBRARIES = ("httpx", "httpcore", "discord.gateway", "discord.client")


class RedactSecrets(logging.Filter):
    """Replaces every known secret in a record's message (and traceback) with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = self._clean(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def settings_secrets(settings: Settings) -> list[str]:
    """Every non-empty secret value in ``settings``, including a database password."""
    found: list[str] = []
    for section in dataclasses.fields(settings):
        value = getattr(settings, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        for item in dataclasses.fields(value):
            setting = getattr(value, item.name)
            if isinstance(setting, Secret) and setting:
                found.append(setting.get())
    from sqlalchemy.engine import make_url

    password = make_url(settings.database.url).password
    if password:
        found.append(str(password))
    return found


def configure_logging(settings: Settings, stream: TextIO) -> RedactSecrets:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redact = RedactSecrets(settings_secrets(settings))
    handler.addFilter(redact)
    # Like basicConfig, this leaves a logging set up by the host (a test runner) alone.
    logging.basicConfig(level=settings.general.log_level, handlers=[handler])
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))
    return redact

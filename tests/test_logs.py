"""No secret reaches a log line, whoever logs it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from bot.logs import RedactSecrets, settings_secrets
from bot.settings import load_settings

TOKEN = "123456:AAH-very-secret-token"


def _logger(name: str, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(secrets))
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_secret_in_a_message_or_its_arguments_is_replaced() -> None:
    logger, stream = _logger("test.redact.args", [TOKEN])
    logger.info("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    logger.info(f"literal bot{TOKEN}/sendMessage")
    written = stream.getvalue()
    assert TOKEN not in written
    assert written.count("***") == 2 and "getUpdates" in written


def test_a_secret_in_a_traceback_is_replaced() -> None:
    logger, stream = _logger("test.redact.exc", [TOKEN])
    try:
        raise ConnectionError(f"cannot reach /bot{TOKEN}/getMe")
    except ConnectionError:
        logger.exception("request failed")
    written = stream.getvalue()
    assert "ConnectionError" in written and TOKEN not in written


def test_short_or_empty_secrets_are_not_redacted_everywhere() -> None:
    logger, stream = _logger("test.redact.short", ["", "ab"])
    logger.info("abc")
    assert stream.getvalue().strip() == "abc"


def test_settings_secrets_include_tokens_and_the_database_password(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        environ={
            "PEERDESK_TELEGRAM_TOKEN": TOKEN,
            "PEERDESK_DISCORD_TOKEN": "discord-token-value",
            "PEERDESK_DATABASE_URL": "postgresql+asyncpg://desk:pg-password-1@db/desk",
        },
        cwd=tmp_path,
    )
    found = settings_secrets(settings)
    assert {TOKEN, "discord-token-value", "pg-password-1"} <= set(found)

"""Everything the bot itself may say, as jinja2 templates in nl, fr and en.

Only these fixed, expert-vetted texts and replies approved by a volunteer ever reach a
chat. Templates are plain text (chat platforms do their own escaping).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

LANGUAGES = ("nl", "fr", "en")
TEMPLATES = (
    "optin_notice",
    "optout_confirmation",
    "privacy_notice",
    "dm_acknowledgement",
    "reply_footer",
    "urgent_alert",
)
# Bumped whenever a notice's wording changes, so consent records say which text was shown.
NOTICE_VERSION = "2026-11-25"

_DIR = Path(__file__).parent


class Prompts:
    """Renders the bot's fixed texts. An unknown name is an error; an unknown language
    falls back to English, which every deployment reads."""

    def __init__(self, directory: Path = _DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )

    def render(self, name: str, language: str, **context: Any) -> str:
        if name not in TEMPLATES:
            raise KeyError(f"unknown prompt {name!r}")
        lang = language if language in LANGUAGES else "en"
        return self._env.get_template(f"{lang}/{name}.j2").render(**context).strip()

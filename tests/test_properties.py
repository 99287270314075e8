"""Property-based tests (hypothesis) for what takes text or values from outside: the
detector's normalisation, reply splitting, and the settings file and environment.

Each property holds for any input hypothesis can make up, not only the examples we
thought of: normalising never fails and gives clean words, splitting keeps every
character and respects the limit, and a settings file or variable is either accepted or
refused with a ConfigError that names the key, never another exception.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.detector import Detector, Lexicon, fold, normalise
from bot.settings import ConfigError, Settings, declared_settings, load_settings
from bot.splitting import split_text, units

# Text as chats send it: any Unicode a platform passes on (no lone surrogates, which
# the adapters replace before anything else sees the text; see tests/test_bad_input.py).
CHAT_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)
ASCII_TEXT = st.text(string.ascii_letters + string.digits + " .,!?'-@#", max_size=200)
WORDS = st.lists(st.from_regex(r"[a-z]{1,12}", fullmatch=True), min_size=1, max_size=8)

LEXICON = Lexicon.load()


@given(CHAT_TEXT)
@example("c0ke 3-mmc pilllen ❄️💊 https://example.org/x @someone")
@example("\u202eevil\u202c z̷̢̛a̶l̵g̴o̸ \x00\x07")
def test_normalise_never_fails_and_gives_clean_words(text: str) -> None:
    words = normalise(text)
    assert all(
        word and word == word.strip() and not any(c.isspace() for c in word) for word in words
    )
    assert all(word == fold(word) for word in words)  # already folded: no case, no accents


@given(ASCII_TEXT)
def test_case_does_not_matter(text: str) -> None:
    assert normalise(text) == normalise(text.swapcase())


@given(WORDS, WORDS, st.sampled_from(["https://example.org/a?b=c", "http://x.test/", "@vera_7"]))
def test_urls_and_mentions_are_not_words(before: list[str], after: list[str], noise: str) -> None:
    plain = " ".join(before) + " " + " ".join(after)
    noisy = " ".join(before) + f" {noise} " + " ".join(after)
    assert normalise(noisy) == normalise(plain)


@given(CHAT_TEXT)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_the_lexicon_detector_scores_any_text(text: str) -> None:
    detection = Detector(LEXICON, threshold=0.5, default_language="nl").detect(text)
    assert 0.0 <= detection.score <= 1.0
    assert detection.flagged == (detection.score >= 0.5 or detection.urgent)


@given(CHAT_TEXT, st.integers(min_value=2, max_value=300))
@example("a" * 50 + " " + "😀" * 40, 7)
@example("Eerste zin. Tweede zin!\n\nNieuwe alinea met een heel lang woord.", 12)
def test_splitting_keeps_every_character_and_the_limit(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(units(part) <= limit for part in parts)
    assert all(part.strip() for part in parts)  # no empty or blank message
    visible = "".join(text.split())
    assert "".join("".join(part.split()) for part in parts) == visible
    if units(text.strip()) <= limit:
        assert parts == ([text.strip()] if text.strip() else [])


# -- settings --------------------------------------------------------------------------------

SECTIONS = sorted({info.section for info in declared_settings()})
KEYS = {
    section: sorted(info.key for info in declared_settings() if info.section == section)
    for section in SECTIONS
}
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for characters outside the BMP (JSON
        # escapes them as surrogate pairs, TOML refuses those) and DEL (TOML escapes it).
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


@st.composite
def config_files(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A TOML file of known sections with known and unknown keys and values of any type;
    also the keys written, so the test can check an error names one of them."""
    lines, written = [], []
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        names = st.one_of(
            st.sampled_from(KEYS[section]), st.from_regex(r"[a-z_]{1,15}", fullmatch=True)
        )
        for key in draw(st.lists(names, max_size=3, unique=True)):
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
            written.append(key)
    return "\n".join(lines) + "\n", written


@given(config_files())
@settings(max_examples=300)
def test_a_settings_file_is_taken_or_refused_with_the_key_named(
    config: tuple[str, list[str]],
) -> None:
    text, written = config
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "peerdesk.toml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_settings(str(path), environ={})
        except ConfigError as exc:
            assert str(path) in str(exc)
            assert any(key in str(exc) for key in written), (str(exc), text)
        else:
            assert isinstance(loaded, Settings)


ENV_NAMES = [info.env for info in declared_settings()]


@given(
    st.sampled_from(ENV_NAMES), st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
)
@settings(max_examples=300)
def test_an_environment_variable_is_taken_or_refused_by_name(name: str, value: str) -> None:
    if "\x00" in value:
        value = value.replace("\x00", "")  # no process environment can hold a NUL
    with tempfile.TemporaryDirectory() as scratch:
        try:
            loaded = load_settings(None, environ={name: value}, cwd=Path(scratch))
        except ConfigError as exc:
            assert name in str(exc), str(exc)
        else:
            assert isinstance(loaded, Settings)


def test_the_properties_see_every_setting() -> None:
    """The strategies above draw from the declared settings; if there were none, the
    properties would test nothing."""
    assert len(ENV_NAMES) > 50 and len(SECTIONS) > 8
    with pytest.raises(ConfigError):
        load_settings(None, environ={"PEERDESK_OUTBOX_POLL_SECONDS": "soon"})

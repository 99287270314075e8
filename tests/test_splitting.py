"""Cutting a long reply into platform-sized parts: limits in UTF-16 units, the best
boundary, nothing lost, no escape character left alone."""

from __future__ import annotations

import random

import pytest

from bot.splitting import split_text, units


def _stranded(part: str) -> bool:
    """Whether ``part`` ends in an escape backslash whose character went to the next part
    (an odd run of backslashes: pairs are escaped backslashes)."""
    return (len(part) - len(part.rstrip("\\"))) % 2 == 1


def _letters(parts: list[str]) -> str:
    """Every character but whitespace, in order: what no split may lose or add."""
    return "".join("".join(p.split()) for p in parts)


def test_units_counts_utf16_code_units() -> None:
    assert units("") == 0
    assert units("xtc") == 3
    assert units("é€") == 2  # in the Basic Multilingual Plane: one unit each
    assert units("💊") == 2  # outside it: a surrogate pair
    assert units("❄️") == 2  # snowflake + variation selector, both in the BMP


def test_a_text_that_fits_is_one_part_without_surrounding_whitespace() -> None:
    assert split_text("  Drink water.\n", 100) == ["Drink water."]
    assert split_text("x" * 10, 10) == ["x" * 10]
    assert split_text("", 10) == []
    assert split_text(" \n\t ", 10) == []


def test_parts_never_exceed_the_limit_in_utf16_units() -> None:
    text = "💊 " * 30  # 30 emoji of two units each, 90 units with the spaces
    parts = split_text(text, 9)
    assert all(units(p) <= 9 for p in parts)
    assert all(len(p) <= 9 for p in parts)
    # Counting characters instead of units would have put five emoji (14 units) in a part.
    assert max(units(p) for p in parts) <= 9 < 14
    assert _letters(parts) == "💊" * 30


def test_emoji_in_one_long_word_are_never_cut_in_half() -> None:
    parts = split_text("💊" * 5, 3)
    assert parts == ["💊"] * 5  # two emoji would be four units


def test_a_sentence_end_is_preferred_over_a_word_boundary() -> None:
    text = "Take it slow tonight. Drink some water and rest between the sets."
    parts = split_text(text, 40)
    assert parts[0] == "Take it slow tonight."
    assert parts == ["Take it slow tonight.", "Drink some water and rest between the", "sets."]


def test_a_paragraph_end_is_preferred_over_a_sentence_end() -> None:
    text = "First point. Still the first.\n\nSecond point. And a third sentence here."
    parts = split_text(text, 60)
    assert parts == ["First point. Still the first.", "Second point. And a third sentence here."]


def test_a_line_end_is_preferred_over_a_word_boundary() -> None:
    text = "water bottle and earplugs\nchewing gum for the jaw and more"
    parts = split_text(text, 40)
    assert parts[0] == "water bottle and earplugs"


def test_a_sentence_keeps_its_closing_quote_and_bracket() -> None:
    quoted = split_text('He said "stop now." Then he left the party early.', 25)
    assert quoted[0] == 'He said "stop now."'
    bracketed = split_text("Drink water (not too much.) Take breaks often and rest.", 30)
    assert bracketed == ["Drink water (not too much.)", "Take breaks often and rest."]


def test_a_boundary_in_the_first_third_is_not_used() -> None:
    # "Ok." would be a stub of a part: a later word boundary is better.
    parts = split_text("Ok. this is a much longer sentence with many words", 30)
    assert parts[0] != "Ok."
    assert units(parts[0]) > 10


def test_a_word_longer_than_a_part_is_cut_hard() -> None:
    parts = split_text("a" * 25, 10)
    assert parts == ["a" * 10, "a" * 10, "a" * 5]
    url = "https://example.org/" + "x" * 50
    parts = split_text(f"See {url} for more", 20)
    assert all(units(p) <= 20 for p in parts)
    assert _letters(parts) == "See" + url + "formore"


def test_a_word_that_fits_is_not_cut_even_if_only_a_stub_precedes_it() -> None:
    # The only break is in the first third: a short part beats a broken link.
    url = "https://example.org/a/very/long/path"
    assert split_text(f"hi {url}", 38) == ["hi", url]


def test_an_escape_backslash_never_ends_a_part() -> None:
    escaped = "\\_" * 20  # a long word of escaped underscores, as markup escaping makes
    for limit in range(2, 12):
        parts = split_text(escaped, limit)
        assert not any(_stranded(p) for p in parts), (limit, parts)
        assert all(units(p) <= limit for p in parts)
        assert "".join(parts) == escaped


def test_a_run_of_escaped_backslashes_longer_than_a_part_is_cut_between_pairs() -> None:
    escaped = "\\" * 10  # five escaped backslashes
    for limit in range(2, 10):
        parts = split_text(escaped, limit)
        assert not any(_stranded(p) for p in parts), (limit, parts)
        assert all(units(p) <= limit for p in parts)
        assert "".join(parts) == escaped


def test_limit_below_two_is_refused() -> None:
    # One unit cannot hold an emoji: no split would fit.
    for limit in (1, 0, -5):
        with pytest.raises(ValueError):
            split_text("hello", limit)


WORDS = [
    "xtc",
    "alcohol",
    "water",
    "drink",
    "Neem",
    "pauzes.",
    "Really?",
    "Wow!",
    "“quoted.”",
    "(aside.)",
    "💊",
    "🎈🎈",
    "❄️",
    "é",
    "https://example.org/a/very/long/path",
    "\\_",
    "…",
]
GAPS = [" ", " ", " ", " ", "  ", "\n", "\n\n", " \n \n "]


@pytest.mark.parametrize("seed", range(8))
def test_any_text_splits_within_the_limit_losing_nothing(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 60))]
        text = "".join(w + rng.choice(GAPS) for w in words)
        limit = rng.randint(2, 80)
        parts = split_text(text, limit)
        assert parts, text
        for part in parts:
            assert part and part == part.strip(), (text, limit, parts)
            assert units(part) <= limit, (text, limit, parts)
            assert not _stranded(part), (text, limit, parts)
        assert _letters(parts) == _letters([text]), (text, limit, parts)
        if all(units(w) <= limit for w in words):
            # No word needed a hard cut: the words come back whole.
            assert " ".join(parts).split() == text.split(), (text, limit, parts)

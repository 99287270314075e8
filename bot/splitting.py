"""Cutting a reply that is too long for one platform message into several.

Lengths are counted in UTF-16 code units, the way Telegram counts them (an emoji outside
the Basic Multilingual Plane is two); that is never less than what Discord counts.
"""

from __future__ import annotations

import re

# Where a part may end, best first: after a paragraph, after a sentence, after a line,
# after a word. Group 1 is the whitespace between two parts; a sentence keeps its closing
# quotes and brackets.
_BOUNDARIES = (
    re.compile(r"(\n\s*\n)"),
    re.compile(r"[.!?…][\"'”»)]*(\s+)"),
    re.compile(r"(\n)"),
    re.compile(r"(\s+)"),
)


def units(text: str) -> int:
    """Length of ``text`` in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _fits(text: str, limit: int) -> int:
    """How many characters from the start of ``text`` fit in ``limit`` code units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units, each ending at the best
    boundary available (paragraph, sentence, line, word; a hard cut only when a single
    word is longer than a part). Parts keep their text; the whitespace between them goes.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    text = text.strip()
    parts: list[str] = []
    while units(text) > limit:
        window = text[: _fits(text, limit)]
        cut = None
        for boundary in _BOUNDARIES:
            # A boundary in the first third would leave a stub of a part: try the next kind.
            ends = [m for m in boundary.finditer(window) if m.start(1) >= len(window) // 3]
            if ends:
                cut, resume = ends[-1].start(1), ends[-1].end(1)
                break
        else:
            # Only a stub fits before the next break: a short part beats a broken word.
            ends = [m for m in _BOUNDARIES[-1].finditer(window) if m.start(1) > 0]
            if ends:
                cut, resume = ends[-1].start(1), ends[-1].end(1)
        if cut is None or cut == 0:
            # Never strand an escape character: the backslashes at the end go to the next
            # part, unless the window is nothing but backslashes (then cut between pairs).
            cut = len(window.rstrip("\\")) or max(len(window) - len(window) % 2, 1)
            resume = cut
        parts.append(text[:cut].rstrip())
        text = text[resume:].lstrip()
    if text:
        parts.append(text)
    return parts

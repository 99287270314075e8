"""A FAQ entry: one topic, its question variants and answer in nl, fr and en, its sources.

On disk an entry is a Markdown file: YAML front matter (id, topic, status, review data,
sources, question variants per language) and one ``## <lang>`` section per answer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("nl", "fr", "en")
STATUSES = ("draft", "in_review", "published", "expired")
CONTENT_DIR = Path(__file__).parent / "content"

_ID = re.compile(r"^[a-z0-9][a-z0-9_]{1,99}$")
_SECTION = re.compile(r"^##\s+(\w+)\s*$", re.MULTILINE)


class EntryError(ValueError):
    """A FAQ file or record is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Source:
    name: str
    url: str


@dataclass(frozen=True)
class Entry:
    id: str
    topic: str
    status: str
    questions: Mapping[str, tuple[str, ...]]
    answers: Mapping[str, str]
    sources: tuple[Source, ...] = ()
    substances: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    reviewed_by: str | None = None
    review_by: dt.date | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang in LANGUAGES if self.answers.get(lang))

    def answer(self, language: str | None) -> tuple[str, str]:
        """The answer in ``language`` if written, else the first available: (lang, text)."""
        if language and self.answers.get(language):
            return language, self.answers[language]
        for lang in ("en", *LANGUAGES):
            if self.answers.get(lang):
                return lang, self.answers[lang]
        return "en", ""

    def question(self, language: str | None) -> str:
        lang, _ = self.answer(language)
        variants = self.questions.get(lang) or ()
        return variants[0] if variants else self.topic

    def content(self) -> dict[str, Any]:
        """The revisioned part of the entry, as JSON-ready data for the store."""
        return {
            "questions": {lang: list(v) for lang, v in self.questions.items()},
            "answers": dict(self.answers),
            "sources": [{"name": s.name, "url": s.url} for s in self.sources],
            "substances": list(self.substances),
            "tags": list(self.tags),
            # Fields of the file that peerdesk does not use are kept, as JSON values.
            **(
                {"extra": json.loads(json.dumps(dict(self.extra), default=str))}
                if self.extra
                else {}
            ),
        }

    @classmethod
    def from_content(
        cls,
        *,
        id: str,
        topic: str,
        status: str,
        content: Mapping[str, Any],
        reviewed_by: str | None = None,
        review_by: dt.date | None = None,
    ) -> Entry:
        return cls(
            id=id,
            topic=topic,
            status=status,
            questions={k: tuple(v) for k, v in content.get("questions", {}).items()},
            answers=dict(content.get("answers", {})),
            sources=tuple(Source(s["name"], s["url"]) for s in content.get("sources", [])),
            substances=tuple(content.get("substances", [])),
            tags=tuple(content.get("tags", [])),
            reviewed_by=reviewed_by,
            review_by=review_by,
            extra=dict(content.get("extra", {})),
        )


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise EntryError(f"{where}: expected a list of non-empty texts")
    return tuple(v.strip() for v in value)


def parse_markdown(text: str, *, source: str = "<text>") -> Entry:
    """Parse one entry file. Raises :class:`EntryError` naming ``source`` and the field."""
    if not text.startswith("---"):
        raise EntryError(f"{source}: missing front matter (the file must start with ---)")
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise EntryError(f"{source}: front matter is not closed with a --- line")
    head, body = parts[0][3:], parts[1]
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        raise EntryError(f"{source}: front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise EntryError(f"{source}: front matter must be a mapping of fields")

    entry_id = meta.get("id")
    if not isinstance(entry_id, str) or not _ID.match(entry_id):
        raise EntryError(
            f"{source}: id: expected lowercase letters, digits and _, got {entry_id!r}"
        )
    topic = meta.get("topic", entry_id)
    if not isinstance(topic, str) or not topic:
        raise EntryError(f"{source}: topic: expected a text")
    status = meta.get("status", "draft")
    if status not in STATUSES:
        raise EntryError(f"{source}: status: {status!r} is not one of {', '.join(STATUSES)}")
    review_by = meta.get("review_by")
    if review_by is not None and not isinstance(review_by, dt.date):
        raise EntryError(f"{source}: review_by: expected a date like 2027-06-30")
    reviewed_by = meta.get("reviewed_by")
    if reviewed_by is not None and not isinstance(reviewed_by, str):
        raise EntryError(f"{source}: reviewed_by: expected a name")

    raw_questions = meta.get("questions") or {}
    if not isinstance(raw_questions, dict):
        raise EntryError(f"{source}: questions: expected one list per language")
    questions: dict[str, tuple[str, ...]] = {}
    for lang, variants in raw_questions.items():
        if lang not in LANGUAGES:
            raise EntryError(f"{source}: questions.{lang}: unknown language")
        questions[lang] = _str_list(variants, f"{source}: questions.{lang}")

    sources: list[Source] = []
    for i, item in enumerate(meta.get("sources") or []):
        if not isinstance(item, dict) or not item.get("name") or not item.get("url"):
            raise EntryError(f"{source}: sources[{i}]: expected a name and a url")
        if not str(item["url"]).startswith(("https://", "http://")):
            raise EntryError(f"{source}: sources[{i}]: the url must start with https://")
        sources.append(Source(str(item["name"]), str(item["url"])))

    answers: dict[str, str] = {}
    pieces = _SECTION.split(body)
    if pieces[0].strip():
        raise EntryError(f"{source}: text before the first '## <language>' answer section")
    for lang, answer in zip(pieces[1::2], pieces[2::2], strict=True):
        if lang not in LANGUAGES:
            raise EntryError(f"{source}: '## {lang}': unknown language")
        if lang in answers:
            raise EntryError(f"{source}: '## {lang}': answer given twice")
        answers[lang] = answer.strip()
    if not any(answers.values()):
        raise EntryError(f"{source}: no answer (add a '## en', '## nl' or '## fr' section)")
    for lang in answers:
        if not questions.get(lang):
            raise EntryError(f"{source}: questions.{lang}: an answer in {lang} needs questions")

    known = {"id", "topic", "status", "review_by", "reviewed_by", "questions", "sources"}
    known |= {"substances", "tags"}
    return Entry(
        id=entry_id,
        topic=topic,
        status=status,
        questions=questions,
        answers=answers,
        sources=tuple(sources),
        substances=_str_list(meta.get("substances"), f"{source}: substances"),
        tags=_str_list(meta.get("tags"), f"{source}: tags"),
        reviewed_by=reviewed_by,
        review_by=review_by,
        extra={k: v for k, v in meta.items() if k not in known},
    )


def to_markdown(entry: Entry) -> str:
    """Write an entry back in the file format :func:`parse_markdown` reads."""
    meta: dict[str, Any] = {
        "id": entry.id,
        "topic": entry.topic,
        "status": entry.status,
        "reviewed_by": entry.reviewed_by,
        "review_by": entry.review_by,
        "substances": list(entry.substances),
        "tags": list(entry.tags),
        "sources": [{"name": s.name, "url": s.url} for s in entry.sources],
        "questions": {lang: list(entry.questions[lang]) for lang in entry.questions},
        **dict(entry.extra),
    }
    head = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=100)
    body = "".join(f"\n## {lang}\n\n{entry.answers[lang]}\n" for lang in entry.answers)
    return f"---\n{head}---\n{body}"


def load_dir(path: Path = CONTENT_DIR) -> list[Entry]:
    """Every ``*.md`` entry in a folder, sorted by id; duplicate ids are an error."""
    if not path.is_dir():
        raise EntryError(f"{path}: FAQ folder not found")
    entries: dict[str, Entry] = {}
    for file in sorted(path.glob("*.md")):
        entry = parse_markdown(file.read_text(encoding="utf-8"), source=str(file))
        if entry.id in entries:
            raise EntryError(f"{file}: id {entry.id!r} is used by another file too")
        entries[entry.id] = entry
    return [entries[k] for k in sorted(entries)]

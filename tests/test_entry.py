"""Tests for knowledge_base.entry: the FAQ Markdown format and its error messages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from knowledge_base.entry import (
    Entry,
    EntryError,
    Source,
    load_dir,
    parse_markdown,
    to_markdown,
)

SOURCE = "faq/ghb_alcohol.md"

MINIMAL = """---
id: ghb_alcohol
questions:
  en:
    - Can I mix GHB with alcohol?
---

## en

No: together they slow your breathing.
"""


def entry_text(front: str, body: str = "## en\n\nAn answer.\n") -> str:
    return f"---\n{front.strip()}\n---\n\n{body}"


def parse_error(text: str, source: str = SOURCE) -> str:
    with pytest.raises(EntryError) as excinfo:
        parse_markdown(text, source=source)
    return str(excinfo.value)


# --- parsing ------------------------------------------------------------------------------------


def test_parse_minimal_entry() -> None:
    entry = parse_markdown(MINIMAL, source=SOURCE)

    assert entry == Entry(
        id="ghb_alcohol",
        topic="ghb_alcohol",
        status="draft",
        questions={"en": ("Can I mix GHB with alcohol?",)},
        answers={"en": "No: together they slow your breathing."},
    )
    assert entry.languages == ("en",)
    assert entry.sources == ()
    assert entry.extra == {}


def test_parse_full_entry() -> None:
    text = """---
id: ketamine_bladder
topic: Ketamine and your bladder
status: published
reviewed_by: Dr. A. Peeters
review_by: 2027-06-30
substances: [ketamine]
tags: [health, long-term]
sources:
  - name: Example source
    url: https://example.org/ketamine
questions:
  nl:
    - Is ketamine slecht voor je blaas?
  fr:
    - La kétamine abîme-t-elle la vessie ?
  en:
    - "  Is ketamine bad for your bladder?  "
    - Ketamine bladder
owner: harm-reduction team
---

## nl

Ja, bij vaak gebruik.

## fr

Oui, en cas d'usage fréquent.

## en

Yes, with frequent use.
Drink water.
"""

    entry = parse_markdown(text, source=SOURCE)

    assert entry.id == "ketamine_bladder"
    assert entry.topic == "Ketamine and your bladder"
    assert entry.status == "published"
    assert entry.reviewed_by == "Dr. A. Peeters"
    assert entry.review_by == dt.date(2027, 6, 30)
    assert entry.substances == ("ketamine",)
    assert entry.tags == ("health", "long-term")
    assert entry.sources == (Source("Example source", "https://example.org/ketamine"),)
    assert entry.questions["en"] == ("Is ketamine bad for your bladder?", "Ketamine bladder")
    assert entry.answers == {
        "nl": "Ja, bij vaak gebruik.",
        "fr": "Oui, en cas d'usage fréquent.",
        "en": "Yes, with frequent use.\nDrink water.",
    }
    assert entry.languages == ("nl", "fr", "en")
    assert entry.extra == {"owner": "harm-reduction team"}


def test_answer_falls_back_to_english_then_first_language() -> None:
    entry = parse_markdown(MINIMAL, source=SOURCE)

    assert entry.answer("nl") == ("en", "No: together they slow your breathing.")
    assert entry.answer(None) == ("en", "No: together they slow your breathing.")
    assert entry.question("fr") == "Can I mix GHB with alcohol?"


# --- round trip ---------------------------------------------------------------------------------


def test_round_trip_minimal() -> None:
    entry = parse_markdown(MINIMAL, source=SOURCE)

    assert parse_markdown(to_markdown(entry), source=SOURCE) == entry


def test_round_trip_full() -> None:
    entry = Entry(
        id="mdma_heat",
        topic="MDMA and overheating: what to do?",
        status="in_review",
        questions={
            "nl": ("Wat als iemand oververhit raakt na xtc?", "xtc en hitte"),
            "fr": ("Que faire si quelqu'un a trop chaud après la MD ?",),
            "en": ("What if someone overheats on MDMA?",),
        },
        answers={
            "nl": "Breng de persoon naar een koele plek.\n\nBel 112 bij verwarring.",
            "fr": "Emmenez la personne au frais : appelez le 112 si besoin.",
            "en": "Move them somewhere cool. Call 112 if they are confused.",
        },
        sources=(Source("Guide: heat", "https://example.org/heat?lang=en#top"),),
        substances=("mdma",),
        tags=("heat", "festival"),
        reviewed_by="Jamie",
        review_by=dt.date(2027, 1, 31),
        extra={"owner": "team-b", "priority": 2},
    )

    text = to_markdown(entry)

    assert text.startswith("---\n")
    assert parse_markdown(text, source=SOURCE) == entry


# --- errors -------------------------------------------------------------------------------------


def test_missing_front_matter() -> None:
    message = parse_error("id: ghb_alcohol\n\n## en\n\nAn answer.\n")

    assert message == f"{SOURCE}: missing front matter (the file must start with ---)"


def test_unclosed_front_matter() -> None:
    message = parse_error("---\nid: ghb_alcohol\n\n## en\n\nAn answer.\n")

    assert message == f"{SOURCE}: front matter is not closed with a --- line"


def test_bad_yaml() -> None:
    message = parse_error(entry_text("id: [ghb_alcohol\nstatus: draft"))

    assert message.startswith(f"{SOURCE}: front matter is not valid YAML: ")


def test_front_matter_not_a_mapping() -> None:
    message = parse_error(entry_text("- just\n- a list"))

    assert message == f"{SOURCE}: front matter must be a mapping of fields"


@pytest.mark.parametrize("bad_id", ["Bad-ID", "x", "_leading", "with space"])
def test_bad_id(bad_id: str) -> None:
    message = parse_error(entry_text(f"id: '{bad_id}'\nquestions:\n  en: [A question]"))

    assert message == f"{SOURCE}: id: expected lowercase letters, digits and _, got {bad_id!r}"


def test_missing_id() -> None:
    message = parse_error(entry_text("questions:\n  en: [A question]"))

    assert message == f"{SOURCE}: id: expected lowercase letters, digits and _, got None"


def test_bad_status() -> None:
    message = parse_error(
        entry_text("id: ghb_alcohol\nstatus: live\nquestions:\n  en: [A question]")
    )

    assert message == (
        f"{SOURCE}: status: 'live' is not one of draft, in_review, published, expired"
    )


def test_review_by_not_a_date() -> None:
    message = parse_error(
        entry_text("id: ghb_alcohol\nreview_by: next year\nquestions:\n  en: [A question]")
    )

    assert message == f"{SOURCE}: review_by: expected a date like 2027-06-30"


def test_unknown_language_section() -> None:
    message = parse_error(
        entry_text(
            "id: ghb_alcohol\nquestions:\n  en: [A question]", "## en\n\nA.\n\n## de\n\nB.\n"
        )
    )

    assert message == f"{SOURCE}: '## de': unknown language"


def test_unknown_question_language() -> None:
    message = parse_error(entry_text("id: ghb_alcohol\nquestions:\n  de: [Eine Frage]"))

    assert message == f"{SOURCE}: questions.de: unknown language"


def test_questions_must_be_texts() -> None:
    message = parse_error(entry_text("id: ghb_alcohol\nquestions:\n  en: [A question, '']"))

    assert message == f"{SOURCE}: questions.en: expected a list of non-empty texts"


def test_answer_without_questions() -> None:
    message = parse_error(
        entry_text(
            "id: ghb_alcohol\nquestions:\n  en: [A question]", "## en\n\nA.\n\n## nl\n\nB.\n"
        )
    )

    assert message == f"{SOURCE}: questions.nl: an answer in nl needs questions"


def test_answer_given_twice() -> None:
    message = parse_error(
        entry_text(
            "id: ghb_alcohol\nquestions:\n  en: [A question]", "## en\n\nA.\n\n## en\n\nB.\n"
        )
    )

    assert message == f"{SOURCE}: '## en': answer given twice"


def test_no_answers() -> None:
    message = parse_error(entry_text("id: ghb_alcohol\nquestions:\n  en: [A question]", ""))

    assert message == f"{SOURCE}: no answer (add a '## en', '## nl' or '## fr' section)"


def test_only_empty_answer_sections() -> None:
    message = parse_error(
        entry_text("id: ghb_alcohol\nquestions:\n  en: [A question]", "## en\n\n")
    )

    assert message == f"{SOURCE}: no answer (add a '## en', '## nl' or '## fr' section)"


def test_text_before_first_section() -> None:
    message = parse_error(
        entry_text("id: ghb_alcohol\nquestions:\n  en: [A question]", "Intro.\n\n## en\n\nA.\n")
    )

    assert message == f"{SOURCE}: text before the first '## <language>' answer section"


def test_source_without_url() -> None:
    message = parse_error(
        entry_text("id: ghb_alcohol\nsources:\n  - name: Somewhere\nquestions:\n  en: [A question]")
    )

    assert message == f"{SOURCE}: sources[0]: expected a name and a url"


def test_default_source_name() -> None:
    with pytest.raises(EntryError) as excinfo:
        parse_markdown("no front matter")

    assert str(excinfo.value).startswith("<text>: ")


# --- folders ------------------------------------------------------------------------------------


def write_entry(folder: Path, name: str, entry_id: str) -> Path:
    path = folder / name
    path.write_text(
        entry_text(f"id: {entry_id}\nquestions:\n  en: [Question about {entry_id}]"),
        encoding="utf-8",
    )
    return path


def test_load_dir_sorted_by_id(tmp_path: Path) -> None:
    write_entry(tmp_path, "a.md", "zebra")
    write_entry(tmp_path, "b.md", "alpha")
    (tmp_path / "notes.txt").write_text("not an entry", encoding="utf-8")

    entries = load_dir(tmp_path)

    assert [entry.id for entry in entries] == ["alpha", "zebra"]


def test_load_dir_duplicate_ids(tmp_path: Path) -> None:
    write_entry(tmp_path, "a.md", "ghb_alcohol")
    second = write_entry(tmp_path, "b.md", "ghb_alcohol")

    with pytest.raises(EntryError) as excinfo:
        load_dir(tmp_path)

    assert str(excinfo.value) == f"{second}: id 'ghb_alcohol' is used by another file too"


def test_load_dir_error_names_the_file(tmp_path: Path) -> None:
    write_entry(tmp_path, "a.md", "ghb_alcohol")
    broken = tmp_path / "b.md"
    broken.write_text("no front matter", encoding="utf-8")

    with pytest.raises(EntryError) as excinfo:
        load_dir(tmp_path)

    assert str(excinfo.value) == f"{broken}: missing front matter (the file must start with ---)"


def test_load_dir_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"

    with pytest.raises(EntryError) as excinfo:
        load_dir(missing)

    assert str(excinfo.value) == f"{missing}: FAQ folder not found"


def test_load_dir_empty_folder(tmp_path: Path) -> None:
    assert load_dir(tmp_path) == []


def test_sources_must_be_web_addresses() -> None:
    text = (
        "---\nid: x_y\nsources:\n  - name: Evil\n    url: javascript:alert(1)\n"
        "questions:\n  en: [q]\n---\n## en\n\nA.\n"
    )
    with pytest.raises(EntryError, match=r"sources\[0\]: the url must start with https://"):
        parse_markdown(text, source="x.md")


def test_unknown_front_matter_fields_survive_the_store_format() -> None:
    text = "---\nid: x_y\nowner: ann\nquestions:\n  en: [q]\n---\n## en\n\nA.\n"
    entry = parse_markdown(text)
    again = Entry.from_content(
        id=entry.id, topic=entry.topic, status=entry.status, content=entry.content()
    )
    assert dict(again.extra) == {"owner": "ann"}
    assert to_markdown(again) == to_markdown(entry)

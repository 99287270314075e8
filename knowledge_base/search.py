"""Lexical FAQ search: BM25 over each language's questions and answer, with stemming.

Each entry is indexed once per language it is written in (questions count double: they
are phrased the way people ask). A query is stemmed with each language's stemmer and
scored against that language's documents; an entry's score is its best language.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import snowballstemmer

from knowledge_base.entry import LANGUAGES, Entry

_STEMMERS = {"nl": "dutch", "fr": "french", "en": "english"}
_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"\d+")

# Words too common to tell entries apart; kept short on purpose (slang must survive).
STOPWORDS: dict[str, frozenset[str]] = {
    "nl": frozenset(
        "de het een en of is in op te van voor met dat die dit wat hoe ik je jij u we wij "
        "ze zij er niet al als aan bij dan om ook maar naar nog zo kan mag moet wel ben "
        "heb heeft zijn was mijn me mn".split()
    ),
    "fr": frozenset(
        "le la les un une des et ou est en dans sur de du au aux pour avec que qui quoi "
        "ce cette je tu il elle on nous vous ils me te se ne pas plus mon ma mes ton ta "
        "son sa ses c j l d qu est-ce a ai as faire fait peut peux on ou ca si y "
        "quand comment".split()
    ),
    "en": frozenset(
        "the a an and or is are in on of for to with that this what how i you he she it "
        "we they me my your do does can be been was were not no at by from as if so "
        "im it's".split()
    ),
}


def fold(text: str) -> str:
    """Lowercase and strip accents, so 'Kétamine' and 'ketamine' meet."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokens(text: str) -> list[str]:
    """Words of ``text``; a number followed by a word also yields them joined, so that
    "3-MMC", "3 mmc" and "3mmc" meet."""
    words = _WORD.findall(fold(text))
    out: list[str] = []
    for i, word in enumerate(words):
        out.append(word)
        if _NUMBER.fullmatch(word) and i + 1 < len(words) and words[i + 1].isalpha():
            out.append(word + words[i + 1])
        elif word[0].isdigit() and not word.isdigit():
            out.append(word.lstrip("0123456789"))
    return out


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float
    language: str  # language whose text matched best
    why: tuple[str, ...]  # the query words that matched


class _Field:
    """BM25 statistics for one language's documents."""

    k1 = 1.2
    b = 0.75

    def __init__(self, language: str) -> None:
        self.language = language
        self._stemmer = snowballstemmer.stemmer(_STEMMERS[language])
        self._stop = STOPWORDS[language]
        self.docs: dict[str, Counter[str]] = {}
        self.lengths: dict[str, int] = {}
        self.df: Counter[str] = Counter()

    def analyse(self, text: str) -> list[str]:
        words = [w for w in tokens(text) if w not in self._stop]
        return [str(s) for s in self._stemmer.stemWords(words)]

    def add(self, entry_id: str, text: str) -> None:
        terms = Counter(self.analyse(text))
        self.docs[entry_id] = terms
        self.lengths[entry_id] = sum(terms.values())
        self.df.update(terms.keys())

    def score(self, query: str) -> dict[str, tuple[float, set[str]]]:
        n = len(self.docs)
        if not n:
            return {}
        avg = sum(self.lengths.values()) / n
        words = [w for w in tokens(query) if w not in self._stop]
        stems = [str(s) for s in self._stemmer.stemWords(words)]
        out: dict[str, tuple[float, set[str]]] = {}
        for word, stem in zip(words, stems, strict=True):
            df = self.df.get(stem, 0)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for entry_id, terms in self.docs.items():
                tf = terms.get(stem, 0)
                if not tf:
                    continue
                norm = (
                    tf
                    * (self.k1 + 1)
                    / (tf + self.k1 * (1 - self.b + self.b * self.lengths[entry_id] / avg))
                )
                total, matched = out.get(entry_id, (0.0, set()))
                matched.add(word)
                out[entry_id] = (total + idf * norm, matched)
        return out


class SearchIndex:
    """An in-memory index over FAQ entries; rebuild it when the FAQ changes."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._entries = {e.id: e for e in entries}
        self._fields = {lang: _Field(lang) for lang in LANGUAGES}
        for entry in self._entries.values():
            for lang in LANGUAGES:
                questions = " ".join(entry.questions.get(lang, ()))
                answer = entry.answers.get(lang, "")
                if questions or answer:
                    self._fields[lang].add(entry.id, f"{questions} {questions} {answer}")

    def __len__(self) -> int:
        return len(self._entries)

    def search(
        self,
        query: str,
        *,
        top: int = 3,
        statuses: Sequence[str] | None = None,
        language: str | None = None,
    ) -> list[Hit]:
        """Best entries for ``query``; ``statuses`` limits which entries may be returned.

        ``language`` (the asker's) breaks near-ties in favour of entries written in it.
        """
        best: dict[str, tuple[float, str, set[str]]] = {}
        for lang, fld in self._fields.items():
            for entry_id, (score, matched) in fld.score(query).items():
                if lang == language:
                    score *= 1.05
                if entry_id not in best or score > best[entry_id][0]:
                    best[entry_id] = (score, lang, matched)
        hits = [
            Hit(self._entries[eid], round(score, 4), lang, tuple(sorted(matched)))
            for eid, (score, lang, matched) in best.items()
            if statuses is None or self._entries[eid].status in statuses
        ]
        hits.sort(key=lambda h: (-h.score, h.entry.id))
        return hits[: max(top, 0)]

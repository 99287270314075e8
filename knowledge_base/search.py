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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import snowballstemmer

from knowledge_base.embedder import Embedder, Vectors
from knowledge_base.entry import LANGUAGES, Entry

_STEMMERS = {"nl": "dutch", "fr": "french", "en": "english"}
_WORD = re.compile(r"[a-z0-9]+")
# Elisions ("c'est", "j'ai", "qu'on") would leave lone letters that match slang ("c").
_ELIDED = re.compile(r"\b(?:qu|[cjldsnmt])['’]")
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
    words = _WORD.findall(_ELIDED.sub(" ", fold(text)))
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
    variant: str | None = None  # the question variant most similar in meaning


MODES = ("lexical", "semantic", "hybrid")


@dataclass(frozen=True)
class Questions:
    """Every question variant of a set of entries with its vector (rows of ``matrix``);
    ``variants[i]`` is (entry id, language, question) of row i."""

    matrix: Vectors
    variants: tuple[tuple[str, str, str], ...]

    @classmethod
    def embed(cls, entries: Iterable[Entry], embedder: Embedder) -> Questions:
        entries = list(entries)
        vectors = embed_entries(entries, embedder)
        return cls.of(entries, vectors)

    @classmethod
    def of(cls, entries: Iterable[Entry], vectors: Mapping[str, Vectors]) -> Questions:
        variants: list[tuple[str, str, str]] = []
        blocks: list[Vectors] = []
        for entry in entries:
            texts = variant_texts(entry)
            if texts and entry.id in vectors:
                variants.extend((entry.id, lang, q) for lang, q in texts)
                blocks.append(vectors[entry.id])
        matrix = np.vstack(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)
        return cls(matrix=matrix, variants=tuple(variants))

    def closest(self, vector: Vectors) -> tuple[float, tuple[str, str, str] | None]:
        """Similarity of ``vector`` to the nearest question, and that question."""
        if not self.variants or self.matrix.shape[1] != vector.shape[0]:
            return 0.0, None
        sims = self.matrix @ vector
        best = int(np.argmax(sims))
        return float(sims[best]), self.variants[best]


def variant_texts(entry: Entry) -> list[tuple[str, str]]:
    """(language, question) pairs of an entry, in a stable order: what gets embedded."""
    return [(lang, q) for lang in LANGUAGES for q in entry.questions.get(lang, ())]


def embed_entries(
    entries: Iterable[Entry],
    embedder: Embedder,
    *,
    batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Vectors]:
    """Vectors of every entry's question variants, in :func:`variant_texts` order."""
    entries = list(entries)
    pairs = [(e.id, text) for e in entries for _, text in variant_texts(e)]
    vectors: list[Vectors] = []
    for start in range(0, len(pairs), batch):
        chunk = [text for _, text in pairs[start : start + batch]]
        vectors.append(embedder.embed(chunk))
        if progress is not None:
            progress(min(start + batch, len(pairs)), len(pairs))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    out: dict[str, Vectors] = {}
    row = 0
    for entry in entries:
        n = len(variant_texts(entry))
        out[entry.id] = matrix[row : row + n]
        row += n
    return out


class _Field:
    """BM25 statistics for one language's documents, with postings (stem -> the entries
    that contain it, and how often), so a query looks only at entries sharing a word."""

    k1 = 1.2
    b = 0.75
    # Stems are remembered per word (the snowball stemmers are pure Python, and an FAQ
    # repeats its words a lot); past this many words, new ones are stemmed each time.
    max_remembered_stems = 200_000

    def __init__(self, language: str) -> None:
        self.language = language
        self._stemmer = snowballstemmer.stemmer(_STEMMERS[language])
        self._stop = STOPWORDS[language]
        self._stems: dict[str, str] = {}
        self.postings: dict[str, dict[str, int]] = {}
        self.lengths: dict[str, int] = {}
        self.df: Counter[str] = Counter()
        self._total_length = 0

    def _stem(self, words: list[str]) -> list[str]:
        known = self._stems
        new = [w for w in dict.fromkeys(words) if w not in known]
        if new:
            stems = [str(s) for s in self._stemmer.stemWords(new)]
            if len(known) < self.max_remembered_stems:
                known.update(zip(new, stems, strict=True))
            else:
                return [known.get(w) or str(self._stemmer.stemWord(w)) for w in words]
        return [known[w] for w in words]

    def analyse(self, text: str) -> list[str]:
        return self._stem([w for w in tokens(text) if w not in self._stop])

    def add(self, entry_id: str, text: str) -> None:
        terms = Counter(self.analyse(text))
        for stem, tf in terms.items():
            self.postings.setdefault(stem, {})[entry_id] = tf
        self.lengths[entry_id] = sum(terms.values())
        self._total_length += self.lengths[entry_id]
        self.df.update(terms.keys())

    def score(self, query: str) -> dict[str, tuple[float, set[str]]]:
        n = len(self.lengths)
        if not n:
            return {}
        avg = self._total_length / n
        words = [w for w in tokens(query) if w not in self._stop]
        stems = self._stem(words)
        out: dict[str, tuple[float, set[str]]] = {}
        for word, stem in zip(words, stems, strict=True):
            df = self.df.get(stem, 0)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for entry_id, tf in self.postings[stem].items():
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
    """An in-memory index over FAQ entries; rebuild it when the FAQ changes.

    ``mode`` picks lexical BM25, semantic similarity to the question variants (needs an
    embedder and the variants' vectors), or a hybrid: similarity plus ``lexical_weight``
    times the BM25 score scaled to the best hit's. In the last two, hits scoring below
    ``min_score`` are dropped: better no suggestion than an unrelated one.
    """

    def __init__(
        self,
        entries: Iterable[Entry],
        *,
        embedder: Embedder | None = None,
        vectors: Mapping[str, Vectors] | None = None,
        mode: str = "lexical",
        lexical_weight: float = 0.3,
        min_score: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if mode != "lexical" and embedder is None:
            raise ValueError(f"search mode {mode!r} needs an embedder")
        self.mode = mode
        self.lexical_weight = lexical_weight
        # Semantic scores are bounded, so a floor can tell "nothing fits" from a weak fit.
        self.min_score = min_score if mode != "lexical" else 0.0
        self.embedder = embedder
        self._entries = {e.id: e for e in entries}
        self._fields = {lang: _Field(lang) for lang in LANGUAGES}
        for entry in self._entries.values():
            for lang in LANGUAGES:
                questions = " ".join(entry.questions.get(lang, ()))
                answer = entry.answers.get(lang, "")
                if questions or answer:
                    self._fields[lang].add(entry.id, f"{questions} {questions} {answer}")
        # All variant vectors in one matrix; entry i owns rows offsets[i]:offsets[i+1].
        self._owners: list[str] = []
        self._variants: list[tuple[str, str]] = []
        self._offsets: list[int] = []
        blocks: list[Vectors] = []
        rows = 0
        if mode != "lexical":
            vectors = vectors or {}
            missing = [eid for eid in self._entries if eid not in vectors]
            if missing:
                raise ValueError(f"no vectors for FAQ entries: {', '.join(sorted(missing))}")
            for eid, entry in self._entries.items():
                texts = variant_texts(entry)
                matrix = vectors[eid]
                if len(texts) != len(matrix):
                    raise ValueError(f"{eid}: {len(matrix)} vectors for {len(texts)} variants")
                if not texts:
                    continue
                self._owners.append(eid)
                self._offsets.append(rows)
                rows += len(matrix)
                self._variants.extend(texts)
                blocks.append(matrix)
        self._matrix = np.vstack(blocks) if blocks else None
        self._owner_index = {eid: i for i, eid in enumerate(self._owners)}
        self._status_masks: dict[tuple[str, ...], np.ndarray[Any, Any]] = {}
        self._questions: Questions | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def questions(self) -> Questions | None:
        """The indexed question variants and their vectors (None in lexical mode)."""
        if self._matrix is None:
            return None
        if self._questions is None:
            ends = [*self._offsets[1:], len(self._variants)]
            variants = tuple(
                (eid, lang, text)
                for eid, start, end in zip(self._owners, self._offsets, ends, strict=True)
                for lang, text in self._variants[start:end]
            )
            self._questions = Questions(matrix=self._matrix, variants=variants)
        return self._questions

    def _lexical(self, query: str, language: str | None) -> dict[str, tuple[float, str, set[str]]]:
        best: dict[str, tuple[float, str, set[str]]] = {}
        for lang, fld in self._fields.items():
            for entry_id, (score, matched) in fld.score(query).items():
                if lang == language:
                    score *= 1.05
                if entry_id not in best or score > best[entry_id][0]:
                    best[entry_id] = (score, lang, matched)
        return best

    def _semantic(self, query: str) -> tuple[Vectors, Vectors] | None:
        """(similarity of every variant, best similarity per owning entry) to ``query``."""
        if self._matrix is None or self.embedder is None or not query.strip():
            return None
        q = self.embedder.embed([query])[0]
        sims: Vectors = self._matrix @ q
        peaks: Vectors = np.maximum.reduceat(sims, self._offsets)
        return sims, peaks

    def _allowed(self, statuses: Sequence[str] | None) -> np.ndarray[Any, Any]:
        """Which owners (entries with variants) have one of ``statuses``."""
        key = tuple(sorted(statuses)) if statuses is not None else ()
        mask = self._status_masks.get(key)
        if mask is None:
            mask = np.array(
                [statuses is None or self._entries[e].status in statuses for e in self._owners],
                dtype=bool,
            )
            self._status_masks[key] = mask
        return mask

    def _variant(self, i: int, sims: Vectors) -> tuple[str, str]:
        """(language, question) of owner ``i``'s variant closest to the query."""
        start = self._offsets[i]
        end = self._offsets[i + 1] if i + 1 < len(self._offsets) else len(sims)
        return self._variants[start + int(np.argmax(sims[start:end]))]

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
        lexical = self._lexical(query, language)
        top_lexical = max((v[0] for v in lexical.values()), default=0.0) or 1.0
        hits: list[Hit] = []
        if self.mode == "lexical":
            for eid, (score, lang, matched) in lexical.items():
                entry = self._entries[eid]
                if (statuses is not None and entry.status not in statuses) or score <= 0:
                    continue
                hits.append(Hit(entry, round(score, 4), lang, tuple(sorted(matched)), None))
            hits.sort(key=lambda h: (-h.score, h.entry.id))
            return hits[: max(top, 0)]
        semantic = self._semantic(query)
        # Scores of every entry with variants in one array; the few hits are built last.
        scores: Vectors = (
            semantic[1].astype(np.float64)
            if semantic is not None
            else np.zeros(len(self._owners), dtype=np.float64)
        )
        lexical_only: list[tuple[str, float]] = []
        for eid, (lex_score, _, _) in lexical.items():
            share = self.lexical_weight * lex_score / top_lexical if self.mode == "hybrid" else 0
            i = self._owner_index.get(eid)
            if i is None:
                lexical_only.append((eid, share))
            else:
                scores[i] += share
        keep = self._allowed(statuses) & (scores >= self.min_score) & (scores > 0)
        candidates = np.flatnonzero(keep)
        if len(candidates) > top > 0:
            # Everything within rounding of the top-th score, so ties sort as before.
            kth = np.partition(scores[candidates], -top)[-top]
            candidates = candidates[scores[candidates] >= kth - 1e-4]
        elif top <= 0:
            candidates = candidates[:0]
        for k in candidates.tolist():
            eid = self._owners[k]
            _, lex_lang, matched = lexical.get(eid, (0.0, "", set()))
            variant: str | None = None
            lang = lex_lang
            if semantic is not None:
                lang, variant = self._variant(k, semantic[0])
            score = round(float(scores[k]), 4)
            hits.append(Hit(self._entries[eid], score, lang, tuple(sorted(matched)), variant))
        for eid, score in lexical_only:
            entry = self._entries[eid]
            if statuses is not None and entry.status not in statuses:
                continue
            if score < self.min_score or score <= 0:
                continue
            _, lex_lang, matched = lexical[eid]
            hits.append(Hit(entry, round(score, 4), lex_lang, tuple(sorted(matched)), None))
        hits.sort(key=lambda h: (-h.score, h.entry.id))
        return hits[: max(top, 0)]

"""The FAQ as the engine uses it: imported into the store, embedded, indexed, searched."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.store import Store
from knowledge_base import CONTENT_DIR, Entry, Hit, SearchIndex, load_dir
from knowledge_base.embedder import Embedder, Vectors
from knowledge_base.search import Questions, embed_entries, variant_texts

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class FAQ:
    """Holds the search index over the store's FAQ entries; :meth:`refresh` after edits.

    Embeddings of question variants are computed once per entry revision and model, and
    kept in the store; a new model or an edited entry is embedded again at refresh.
    """

    def __init__(
        self,
        store: Store,
        *,
        suggest_statuses: Sequence[str],
        embedder: Embedder | None = None,
        mode: str = "lexical",
        lexical_weight: float = 0.3,
        min_score: float = 0.0,
    ) -> None:
        self.store = store
        self.suggest_statuses = tuple(suggest_statuses)
        self.embedder = embedder
        self.mode = mode if embedder is not None else "lexical"
        self.lexical_weight = lexical_weight
        self.min_score = min_score
        self._index = SearchIndex([])
        self._revisions: dict[str, int] = {}

    async def refresh(self, *, progress: Progress | None = None) -> int:
        """Rebuild the index from the store, embedding what is new. Returns the entry count."""
        revisions = await self.store.faq_revisions()
        entries = await self.store.faq_entries()
        vectors: dict[str, Vectors] = {}
        if self.embedder is not None and self.mode != "lexical":
            await asyncio.to_thread(self.embedder.load)
            vectors = await self._vectors(entries, self.embedder, progress)
        self._index = SearchIndex(
            entries,
            embedder=self.embedder if self.mode != "lexical" else None,
            vectors=vectors,
            mode=self.mode,
            lexical_weight=self.lexical_weight,
            min_score=self.min_score,
        )
        self._revisions = revisions
        return len(entries)

    async def refresh_if_changed(self) -> bool:
        """Refresh when the store's FAQ differs from the index (another instance, or an
        import, changed it). Returns whether it did."""
        if await self.store.faq_revisions() == self._revisions:
            return False
        await self.refresh()
        return True

    async def _vectors(
        self, entries: list[Entry], embedder: Embedder, progress: Progress | None
    ) -> dict[str, Vectors]:
        revisions = await self.store.faq_revisions()
        cached = await self.store.faq_vectors(embedder.name)
        stale = [
            e
            for e in entries
            if e.id not in cached
            or cached[e.id][0] != revisions[e.id]
            or len(cached[e.id][1]) != len(variant_texts(e))
        ]
        if stale:
            logger.info("embedding %d FAQ entries with %s", len(stale), embedder.name)
            fresh = await asyncio.to_thread(embed_entries, stale, embedder, progress=progress)
            for entry_id, matrix in fresh.items():
                await self.store.save_faq_vectors(
                    entry_id, model=embedder.name, revision=revisions[entry_id], vectors=matrix
                )
                cached[entry_id] = (revisions[entry_id], matrix)
        return {e.id: cached[e.id][1] for e in entries}

    def combination_entries(self, first: str, second: str) -> list[Entry]:
        """Entries about combining two substances (tagged ``combination``, naming both)."""
        return [
            e
            for e in self._index.entries()
            if "combination" in e.tags and {first, second} <= set(e.substances)
        ]

    def tags(self, entry_id: str) -> tuple[str, ...]:
        """The tags of an indexed entry (none for an unknown one)."""
        entry = self._index.entry(entry_id)
        return tuple(entry.tags) if entry is not None else ()

    def questions(self) -> Questions | None:
        """The question variants of the index with their vectors, for detection's
        "similar to a FAQ question" signal (None when search is lexical)."""
        return self._index.questions()

    def search(
        self,
        query: str,
        *,
        top: int = 3,
        language: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Search; ``statuses`` defaults to the statuses that may be suggested."""
        chosen = self.suggest_statuses if statuses is None else tuple(statuses)
        return self._index.search(query, top=top, statuses=chosen, language=language)

    async def search_async(
        self,
        query: str,
        *,
        top: int = 3,
        language: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[Hit]:
        """:meth:`search` in a worker thread: embedding a query is CPU work that must not
        hold up the event loop (the console, the bots and the outbox share it)."""
        return await asyncio.to_thread(
            self.search, query, top=top, language=language, statuses=statuses
        )

    async def import_dir(self, path: Path | None = None, *, author: str = "import") -> int:
        """Import every entry file in ``path`` (default: the seed FAQ). Returns how many."""
        entries: list[Entry] = load_dir(path or CONTENT_DIR)
        for entry in entries:
            await self.store.save_faq_entry(entry, author=author)
        await self.refresh()
        logger.info("imported %d FAQ entries from %s", len(entries), path or CONTENT_DIR)
        return len(entries)

"""The FAQ as the engine uses it: imported into the store, indexed, searched, suggested."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from bot.store import Store
from knowledge_base import CONTENT_DIR, Entry, Hit, SearchIndex, load_dir

logger = logging.getLogger(__name__)


class FAQ:
    """Holds the search index over the store's FAQ entries; :meth:`refresh` after edits."""

    def __init__(self, store: Store, *, suggest_statuses: Sequence[str]) -> None:
        self.store = store
        self.suggest_statuses = tuple(suggest_statuses)
        self._index = SearchIndex([])

    async def refresh(self) -> int:
        entries = await self.store.faq_entries()
        self._index = SearchIndex(entries)
        return len(entries)

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

    async def import_dir(self, path: Path | None = None, *, author: str = "import") -> int:
        """Import every entry file in ``path`` (default: the seed FAQ). Returns how many."""
        entries: list[Entry] = load_dir(path or CONTENT_DIR)
        for entry in entries:
            await self.store.save_faq_entry(entry, author=author)
        await self.refresh()
        logger.info("imported %d FAQ entries from %s", len(entries), path or CONTENT_DIR)
        return len(entries)

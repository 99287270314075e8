"""The console in Dutch, French and English: negotiation, the saved choice, the switch, and
catalogues that cover every marked string (console/i18n.py, console/language.py)."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import httpx
import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.runtime import Runtime
from console import i18n
from tests.conftest import CSRF_RE, add_user, flagged_case, login

ROOT = Path(__file__).parent.parent
TRANSLATED = ("nl", "fr")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("nl-BE,nl;q=0.9,en;q=0.8", "nl"),
        ("fr-FR", "fr"),
        ("de-DE,de;q=0.9,fr;q=0.5,en;q=0.4", "fr"),
        ("en;q=0.5, nl;q=0.7", "nl"),
        ("de, *;q=0.1", None),
        ("fr;q=0, nl", "nl"),
        ("FR-be;q=abc, en", "en"),
    ],
)
def test_accept_language_picks_the_best_of_ours(header: str | None, expected: str | None) -> None:
    assert i18n.negotiate(header) == expected


async def test_english_without_a_preference(runtime: Runtime, client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert '<html lang="en">' in page.text and ">Log in</h1>" in page.text


async def test_the_browser_language_is_the_default(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    dutch = await client.get("/login", headers={"accept-language": "nl-BE,nl;q=0.9,en;q=0.5"})
    assert '<html lang="nl">' in dutch.text and ">Inloggen</h1>" in dutch.text
    french = await client.get("/login", headers={"accept-language": "fr-FR,fr;q=0.9"})
    assert '<html lang="fr">' in french.text and ">Connexion</h1>" in french.text
    assert "Log in" not in french.text


async def test_the_saved_choice_wins_over_the_browser(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await add_user(runtime, "lien")
    await runtime.store.set_user_language(user.id, "nl")
    await login(client, "lien")
    queue = await client.get("/queue", headers={"accept-language": "fr"})
    assert '<html lang="nl">' in queue.text
    assert ">Wachtrij</a>" in queue.text and ">File d'attente</a>" not in queue.text


async def test_the_switch_needs_csrf_and_returns_to_the_page(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "odile")
    token = await login(client, "odile")
    refused = await client.post("/language", data={"language": "fr", "next": "/faq"})
    assert refused.status_code == 403
    wrong = await client.post(
        "/language", data={"language": "fr", "next": "/faq", "csrf_token": "x" * 43}
    )
    assert wrong.status_code == 403
    unknown = await client.post("/language", data={"language": "de", "csrf_token": token})
    assert unknown.status_code == 422
    switched = await client.post(
        "/language", data={"language": "fr", "next": "/faq?x=1", "csrf_token": token}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/faq?x=1"
    saved = await runtime.store.user_credentials("odile")
    assert saved is not None and saved[0].language == "fr"
    # Only a path on this site: anything else goes to the queue.
    away = await client.post(
        "/language", data={"language": "fr", "next": "//evil.example", "csrf_token": token}
    )
    assert away.headers["location"] == "/queue"
    faq = await client.get("/faq", headers={"accept-language": "en"})
    assert '<html lang="fr">' in faq.text and "Réponses" in faq.text


async def test_the_switch_on_the_login_page_carries_into_the_account(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "pieter")
    page = await client.get("/login")
    assert 'action="/language"' in page.text
    token = CSRF_RE.search(page.text)
    assert token is not None
    chosen = await client.post(
        "/language", data={"language": "nl", "next": "/login", "csrf_token": token.group(1)}
    )
    assert chosen.headers["location"] == "/login"
    assert ">Inloggen</h1>" in (await client.get("/login")).text
    await login(client, "pieter")
    saved = await runtime.store.user_credentials("pieter")
    assert saved is not None and saved[0].language == "nl"
    assert ">Wachtrij</a>" in (await client.get("/queue")).text


@pytest.mark.parametrize(
    ("language", "expected", "english"),
    [
        (
            "nl",
            ["Gesprek", "Voorgestelde antwoorden", "Jouw antwoord", "Versturen"],
            "Conversation",
        ),
        ("fr", ["Conversation", "Réponses suggérées", "Votre réponse", "Envoyer"], "Your reply"),
    ],
)
async def test_a_case_page_in_dutch_and_french(
    runtime: Runtime,
    client: httpx.AsyncClient,
    language: str,
    expected: list[str],
    english: str,
) -> None:
    user = await add_user(runtime, f"case-{language}")
    await runtime.store.set_user_language(user.id, language)
    await login(client, user.username)
    case_id = await flagged_case(runtime)
    page = await client.get(f"/cases/{case_id}")
    assert page.status_code == 200
    for text in expected:
        assert text in page.text, text
    assert english not in page.text
    assert "Suggested answers" not in page.text


async def test_flash_messages_and_errors_are_translated(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await add_user(runtime, "sanne")
    await runtime.store.set_user_language(user.id, "nl")
    token = await login(client, "sanne")
    case_id = await flagged_case(runtime)
    claimed = await client.post(
        f"/cases/{case_id}/claim", data={"csrf_token": token}, follow_redirects=True
    )
    assert f"Je hebt casus #{case_id}." in claimed.text
    forbidden = await client.get("/lexicon", headers={"accept": "text/html"})
    assert forbidden.status_code == 403 and "je rol mag dit niet doen" in forbidden.text
    # The JSON API keeps its English details.
    api = await client.post("/api/v1/detect", json={"text": "x"})
    assert api.status_code == 403 and "CSRF" in api.json()["detail"]


# -- the catalogues -------------------------------------------------------------------------


def _extracted() -> set[str]:
    """Every msgid marked in console/ now, as scripts/i18n extracts it (babel.cfg)."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        ROOT / "console", method_map, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def _catalog(language: str) -> Catalog:
    with (i18n.LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=language)


def test_babel_cfg_is_what_the_test_extracts() -> None:
    config = (ROOT / "babel.cfg").read_text()
    assert "[python: **.py]" in config and "[jinja2: templates/**.html]" in config


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_marked_string_is_translated(language: str) -> None:
    """Fails when a template or console/*.py has text the .po lacks, or the .po has an
    empty or fuzzy translation: run scripts/i18n and translate what it lists."""
    catalog = _catalog(language)
    present = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
    missing = sorted(_extracted() - set(present))
    assert not missing, f"not in the {language} catalogue (run scripts/i18n): {missing}"
    untranslated = [
        key
        for key, m in present.items()
        if m.fuzzy or not (m.string if isinstance(m.string, str) else all(m.string or ()))
    ]
    assert not untranslated, f"untranslated or fuzzy in {language}: {untranslated}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_their_placeholders(language: str) -> None:
    placeholder = re.compile(r"%\((\w+)\)[sd]")
    wrong = []
    for m in _catalog(language):
        if not m.id:
            continue
        ids = [m.id] if isinstance(m.id, str) else list(m.id)
        strings = [m.string] if isinstance(m.string, str) else list(m.string or ())
        expected = set().union(*(placeholder.findall(i) for i in ids))
        for s in strings:
            # A singular form may leave the count out ("un cas"), never add a name.
            got = set(placeholder.findall(s))
            if not got <= expected or not (expected - {"num"}) <= got:
                wrong.append(f"{ids[0]!r} -> {s!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalogue_matches_the_po(language: str, tmp_path: Path) -> None:
    """The committed .mo is what scripts/i18n compiles from the committed .po."""
    fresh = tmp_path / "messages.mo"
    with fresh.open("wb") as f:
        write_mo(f, _catalog(language))
    committed = i18n.LOCALE_DIR / language / "LC_MESSAGES" / "messages.mo"
    with fresh.open("rb") as a, committed.open("rb") as b:
        expected = gettext.GNUTranslations(a)._catalog  # type: ignore[attr-defined]
        actual = gettext.GNUTranslations(b)._catalog  # type: ignore[attr-defined]
    assert actual == expected, f"{committed} is stale: run scripts/i18n compile"

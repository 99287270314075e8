"""The FAQ in the console: list and to-do, entry and history, editor, workflow, diff."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re

import httpx

from bot.models import Role
from bot.runtime import Runtime
from tests.conftest import add_user, login

ENTRY = "combo_mdma_alcohol"


def _form(page: str) -> dict[str, str]:
    """The edit form's fields as the browser would send them."""
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    for name, text in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S):
        fields[name] = html.unescape(text)
    return fields


async def test_everyone_reads_the_faq_only_experts_edit(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    listing = await client.get("/faq")
    assert listing.status_code == 200 and f'data-entry-id="{ENTRY}"' in listing.text
    assert "waiting for review" in listing.text  # the seed is in review: on the to-do list
    entry = await client.get(f"/faq/{ENTRY}")
    assert entry.status_code == 200 and "revision 1" in entry.text
    assert "Edit</a>" not in entry.text
    assert (await client.get(f"/faq/{ENTRY}/edit")).status_code == 403
    assert (await client.get("/faq/nope", headers={"accept": "text/html"})).status_code == 404


async def test_an_expert_edits_and_the_diff_shows_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    form = _form((await client.get(f"/faq/{ENTRY}/edit")).text)
    assert form["revision"] == "1" and form["answer_nl"]
    form["answer_en"] = "Better not together. Sip water, take breaks, look after each other."
    form["questions_en"] += "\nis mandy ok with beer"
    saved = await client.post(f"/faq/{ENTRY}/edit", data=form, follow_redirects=True)
    assert "Saved as revision 2." in saved.text
    entry, revision = await runtime.store.faq_entry(ENTRY)
    assert revision == 2 and entry.answers["en"].startswith("Better not together.")
    assert "is mandy ok with beer" in entry.questions["en"]
    history = await runtime.store.faq_history(ENTRY)
    assert [(r.revision, r.author) for r in history] == [(2, "exp"), (1, "seed")]
    diff = await client.get(f"/faq/{ENTRY}/diff", params={"old": 1, "new": 2})
    assert '<span class="add">+is mandy ok with beer' not in diff.text  # it is a list item
    assert re.search(r'<span class="add">\+\s+- is mandy ok with beer</span>', diff.text)
    assert re.search(r'<span class="add">\+Better not together', diff.text)
    # The search index follows the edit at once.
    hits = runtime.faq.search("is mandy ok with beer")
    assert hits[0].entry.id == ENTRY


async def test_preview_shows_the_answers_as_sent_and_saves_nothing(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    form = _form((await client.get(f"/faq/{ENTRY}/edit")).text)
    long_fr = ("Buvez de l'eau par petites gorgées et faites des pauses. " * 60).strip()
    form.update(answer_en="<b>Not together</b>, & take breaks.", answer_fr=long_fr)
    form["questions_fr"] = form.get("questions_fr") or "on peut mélanger?"
    shown = await client.post(f"/faq/{ENTRY}/edit", data={**form, "action": "preview"})
    assert shown.status_code == 200
    assert "Preview (not saved yet)" in shown.text
    # Plain text, escaped: what the person receives, not markup.
    assert "&lt;b&gt;Not together&lt;/b&gt;, &amp; take breaks." in shown.text
    assert "<b>Not together" not in shown.text
    assert len(long_fr) > 2000
    assert "Telegram: 1 message" in shown.text and "Discord: 2 messages" in shown.text
    # Nothing was saved, and the form keeps what was typed (and the revision it was read at).
    _, revision = await runtime.store.faq_entry(ENTRY)
    assert revision == 1
    again = _form(shown.text)
    assert again["revision"] == "1" and again["answer_en"] == "<b>Not together</b>, & take breaks."
    saved = await client.post(f"/faq/{ENTRY}/edit", data=again, follow_redirects=True)
    assert "Saved as revision 2." in saved.text


async def test_a_stale_edit_is_refused_and_the_text_kept(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    form = _form((await client.get(f"/faq/{ENTRY}/edit")).text)
    entry, _ = await runtime.store.faq_entry(ENTRY)
    await runtime.store.save_faq_entry(
        entry.__class__(**{**entry.__dict__, "tags": ("changed",)}), author="someone"
    )
    form["answer_en"] = "My careful new answer"
    refused = await client.post(f"/faq/{ENTRY}/edit", data=form)
    assert refused.status_code == 422
    assert "someone saved this entry" in refused.text and "My careful new answer" in refused.text
    bad_sources = {**form, "revision": "2", "sources": "just a name"}
    refused = await client.post(f"/faq/{ENTRY}/edit", data=bad_sources)
    assert refused.status_code == 422 and "sources, line 1" in refused.text


async def _csrf(client: httpx.AsyncClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', (await client.get("/faq")).text)
    assert found is not None
    return found.group(1)


async def _review_by_next_year(runtime: Runtime) -> int:
    entry, _ = await runtime.store.faq_entry(ENTRY)
    later = dt.date.today() + dt.timedelta(days=365)
    return await runtime.store.save_faq_entry(
        dataclasses.replace(entry, review_by=later), author="exp"
    )


async def test_review_workflow_publishes_and_suggests(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    runtime.faq.suggest_statuses = ("published",)
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    revision = await _review_by_next_year(runtime)
    assert runtime.faq.search("xtc en alcohol") == []  # nothing published yet
    token = await _csrf(client)
    published = await client.post(
        f"/faq/{ENTRY}/status",
        data={"status": "published", "revision": str(revision), "csrf_token": token},
        follow_redirects=True,
    )
    assert "Status changed to published." in published.text
    entry, _ = await runtime.store.faq_entry(ENTRY)
    assert (entry.status, entry.reviewed_by) == ("published", "exp")
    assert [h.entry.id for h in runtime.faq.search("xtc en alcohol")] == [ENTRY]
    wrong = await client.post(
        f"/faq/{ENTRY}/status",
        data={"status": "draft", "revision": str(revision + 1), "csrf_token": token},
        headers={"accept": "text/html"},
    )
    assert wrong.status_code == 409
    no_csrf = await client.post(
        f"/faq/{ENTRY}/status", data={"status": "expired", "revision": str(revision + 1)}
    )
    assert no_csrf.status_code == 403


async def test_publishing_what_changed_since_it_was_read_is_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    seen = await _review_by_next_year(runtime)
    entry, _ = await runtime.store.faq_entry(ENTRY)
    await runtime.store.save_faq_entry(
        dataclasses.replace(entry, answers={**entry.answers, "en": "Unreviewed text"}),
        author="someone",
    )
    response = await client.post(
        f"/faq/{ENTRY}/status",
        data={"status": "published", "revision": str(seen), "csrf_token": await _csrf(client)},
        follow_redirects=True,
    )
    assert "The entry changed since you opened it" in response.text
    assert (await runtime.store.faq_entry(ENTRY))[0].status == "in_review"


async def test_editing_a_published_entry_sends_it_back_to_review(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    entry, _ = await runtime.store.faq_entry(ENTRY)
    await runtime.store.save_faq_entry(
        dataclasses.replace(
            entry,
            status="published",
            reviewed_by="ann",
            review_by=dt.date.today() + dt.timedelta(days=90),
        ),
        author="ann",
    )
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    form = _form((await client.get(f"/faq/{ENTRY}/edit")).text)
    form["answer_en"] = "A new text nobody reviewed yet."
    saved = await client.post(f"/faq/{ENTRY}/edit", data=form, follow_redirects=True)
    assert "back in review until an expert publishes it" in saved.text
    edited, _ = await runtime.store.faq_entry(ENTRY)
    assert (edited.status, edited.reviewed_by) == ("in_review", None)


async def test_volunteers_cannot_change_the_faq(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    token = await login(client, "vol")
    for path, data in [
        (f"/faq/{ENTRY}/edit", {"revision": "1", "answer_en": "x", "questions_en": "q"}),
        (f"/faq/{ENTRY}/status", {"status": "published", "revision": "1"}),
    ]:
        response = await client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
    assert (await runtime.store.faq_entry(ENTRY))[1] == 1


async def test_answers_cannot_hold_a_language_heading(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "exp", Role.EXPERT)
    await login(client, "exp")
    form = _form((await client.get(f"/faq/{ENTRY}/edit")).text)
    form["answer_en"] = "Intro\n## Tips\nDrink water"
    refused = await client.post(f"/faq/{ENTRY}/edit", data=form)
    assert refused.status_code == 422 and "starting with &#39;## &#39;" in refused.text
    assert (await runtime.store.faq_entry(ENTRY))[1] == 1


async def test_entries_past_review_date_expire(runtime: Runtime) -> None:
    entry, _ = await runtime.store.faq_entry(ENTRY)
    past = entry.__class__(
        **{**entry.__dict__, "status": "published", "review_by": dt.date(2020, 1, 1)}
    )
    await runtime.store.save_faq_entry(past, author="exp")
    await runtime.maintain()
    expired, _ = await runtime.store.faq_entry(ENTRY)
    assert expired.status == "expired"
    assert all(h.entry.id != ENTRY for h in runtime.faq.search("xtc en alcohol"))
    (latest, *_) = await runtime.store.faq_history(ENTRY)
    assert latest.author == "review date passed"

"""Hostile text in the real browser: no script runs, and the text is shown as written.

A corpus of XSS payloads (script tags, event handlers, javascript: URLs, SVG and MathML,
attribute and element breakouts, template and SQL injection, unicode tricks, control
characters, a very long string, markdown links) goes in through every way text enters
the console: chat messages and author display names (queue and case page), the FAQ
editor (questions and answers), four-eyes replies and the comments that send them back,
approved replies, the detection playground, the lexicon editor (terms, notes, sources)
and the queue's filters. Each page is rendered by Chromium with the Content-Security-
Policy *bypassed*, so escaping alone must hold (the CSP is a second wall, checked in
tests/test_security.py). Every payload would set ``window.__xss`` or open a dialog; the
tests check neither happened, that no element carries an event handler or a
``javascript:`` URL, and that each text on the page equals the stored text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.models import IncomingMessage, PendingReply, Role, User, Visibility
from bot.runtime import Runtime
from console.replies import send_back, send_reply
from tests.fakes import channel, opt_in
from tests.test_browser import Console, log_in

pytestmark = pytest.mark.browser

JS = "window.__xss=1"
VECTORS = [
    f"<script>{JS}</script>",
    f"<SCRIPT>{JS}</SCRIPT>",
    f"<script >{JS}</script >",
    f"<script\n>{JS}</script>",
    f"<scr<script>ipt>{JS}</script>",
    f"<script src=data:text/javascript,{JS}></script>",
    f"<img src=x onerror={JS}>",
    f'<img src="x" onerror="{JS}">',
    f"<img/src/onerror={JS}>",
    f"<IMG SRC=x oNeRrOr={JS}>",
    f"<svg onload={JS}>",
    f"<svg/onload={JS}>",
    f"<svg><script>{JS}</script></svg>",
    f"<svg><animate onbegin={JS} attributeName=x dur=1s>",
    f'<svg><a xlink:href="javascript:{JS}"><text x=20 y=20>x</text></a></svg>',
    f"<math><mtext><table><mglyph><style><img src=x onerror={JS}>",
    f'<math href="javascript:{JS}">x</math>',
    f"<body onload={JS}>",
    f"<iframe src=javascript:{JS}></iframe>",
    '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
    f"<object data=javascript:{JS}></object>",
    f"<embed src=javascript:{JS}>",
    f"<details open ontoggle={JS}>",
    f"<input autofocus onfocus={JS}>",
    f"<select autofocus onfocus={JS}>",
    f"<textarea autofocus onfocus={JS}>",
    f"<video><source onerror={JS}></video>",
    f"<audio src=x onerror={JS}>",
    f"<marquee onstart={JS}>",
    f"<div onmouseover={JS}>hover</div>",
    f"<a href=javascript:{JS}>click</a>",
    f'<a href="JaVaScRiPt:{JS}">click</a>',
    f'<a href="&#106;avascript:{JS}">click</a>',
    f'<a href="java\tscript:{JS}">click</a>',
    f"<form action=javascript:{JS}><button>go</button></form>",
    f"<button formaction=javascript:{JS}>go</button>",
    f"<link rel=import href=data:text/html,<script>{JS}</script>>",
    f'<meta http-equiv="refresh" content="0;url=javascript:{JS}">',
    f"<base href=javascript:{JS}//>",
    f'<style>@import "javascript:{JS}";</style>',
    f'<div style="background:url(javascript:{JS})">x</div>',
    f"<x onclick={JS}>x</x>",
    "<img src=x onerror=alert(1)>",
    "<script>alert(document.domain)</script>",
    "<svg onload=confirm(1)>",
    "<body onpageshow=prompt(1)>",
    f"javascript:{JS}",
    f"JAVASCRIPT:{JS}",
    f"data:text/html,<script>{JS}</script>",
    f"vbscript:{JS}",
    f"[click me](javascript:{JS})",
    f"![img](javascript:{JS})",
    f"[a](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==) {JS}",
    f"<https://example.org/?q=<script>{JS}</script>>",
    f"**bold** _it_ `<script>{JS}</script>`",
    f"&lt;script&gt;{JS}&lt;/script&gt;",
    f"&#60;script&#62;{JS}&#60;/script&#62;",
    f"\\u003cscript\\u003e{JS}\\u003c/script\\u003e",
    f"%3Cscript%3E{JS}%3C/script%3E",
    f"＜script＞{JS}＜/script＞",
    f"<scr\u200bipt>{JS}</scr\u200bipt>",
    f"\u202e<script>{JS}</script>",
    f"\u202egpj.exe <img src=x onerror={JS}>",
    f"\u2028<script>{JS}</script>\u2029",
    f"<!--<img src=x onerror={JS}>-->",
    f"<![CDATA[<script>{JS}</script>]]>",
    f'<noscript><p title="</noscript><img src=x onerror={JS}>">',
    f"<template><script>{JS}</script></template>",
    f"<plaintext><script>{JS}</script>",
    f"<xmp><script>{JS}</script></xmp>",
    f"<isindex action=javascript:{JS} type=image>",
    "{{7*7}}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.app.state.runtime.settings }}",
    "{{ self.__init__.__globals__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% raw %}{{ 7*7 }}{% endraw %}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{# comment #}",
    "${7*7}",
    "#{7*7}",
    "<%= 7*7 %>",
    "{{constructor.constructor('window.__xss=1')()}}",
    "'; DROP TABLE cases; --",
    '"; DROP TABLE messages; --',
    "' OR '1'='1",
    "1; DELETE FROM users WHERE 1=1; --",
    "' UNION SELECT password_hash FROM users --",
    "Robert'); DROP TABLE faq_entries;--",
    "\x01\x02\x03\x1b[31mred\x1b[0m\x7f",
    "tab\there\fform\vfeed",
    "null\x00byte <script>window.__xss=1</script>",
    "line\r\nbreak\rcarriage <b>bold</b>",
    "z\u0361\u0364\u0368a\u036d\u0313l\u0350\u0346g\u0310o <script>window.__xss=1</script>",
    "😀💊🍄 <img src=x onerror=window.__xss=1> 🔥",
    "\ufeff\u200d\u2060<svg onload=window.__xss=1>",
    "א<script>window.__xss=1</script>ב \u200f",
    "A" * 5000 + "<script>window.__xss=1</script>",
    "<" * 300 + ">" * 300,
    "\"'><script>window.__xss=1</script>",
]
#: The same vectors again after the usual breakouts: out of an attribute, a textarea, a
#: title, a comment, a script block.
BREAKOUTS = ['">', "'>", "</textarea>", "</title>", "-->", "</script>", "</option></select>"]
CORE = [
    f"<script>{JS}</script>",
    f"<img src=x onerror={JS}>",
    f"<svg onload={JS}>",
    f"<a href=javascript:{JS}>x</a>",
]
PAYLOADS = list(
    dict.fromkeys(VECTORS + [b + c for b in BREAKOUTS for c in CORE] + ['" onmouseover="' + JS])
)
INJECTIONS = [
    "'; DROP TABLE cases; --",
    "{{ config }}",
    "${7*7}",
    "{{7*7}}",
    "{% raw %}{{ 7*7 }}{% endraw %}",
]


def test_the_corpus_is_large_and_varied() -> None:
    assert len(PAYLOADS) >= 100
    assert all(p.strip() for p in PAYLOADS)
    assert set(INJECTIONS) <= set(PAYLOADS)


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, seeded_sqlite: Path) -> Iterator[Console]:
    server = Console(tmp_path_factory.mktemp("xss"), seeded_sqlite)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Watched:
    """A page whose dialogs are recorded, with the CSP off and nothing but the console
    reachable."""

    def __init__(self, page: Any, origin: str) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.external: list[str] = []
        page.on("dialog", self._dialog)

        def guard(route: Any) -> None:
            if route.request.url.startswith(origin):
                route.continue_()
            else:
                self.external.append(route.request.url)
                route.abort()

        page.route("**/*", guard)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def goto(self, url: str) -> Any:
        response = self.page.goto(url)
        self.assert_clean(url)
        return response

    def assert_clean(self, where: str) -> None:
        self.page.wait_for_timeout(60)  # onerror, onload, ontoggle, autofocus fire late
        found: list[str] = self.page.evaluate(CHECK)
        assert not self.dialogs, f"{where}: a dialog opened: {self.dialogs}"
        assert not found, f"{where}: {found[:10]}"
        ext = [u for u in self.external if not u.startswith("data:")]
        assert not ext, f"{where}: the page asked for {ext[:5]}"


# The console's own scripts, served from its static folder: any other script is injected.
OUR_SCRIPTS = sorted(
    p.name for p in (Path(__file__).parent.parent / "console" / "static").glob("*.js")
)

CHECK = """() => {
  const bad = [];
  if (window.__xss !== undefined || (window.parent && window.parent.__xss !== undefined)) {
    bad.push("window.__xss was set");
  }
  const urlAttrs = ["href", "src", "action", "formaction", "xlink:href", "data", "srcdoc"];
  for (const el of document.querySelectorAll("*")) {
    for (const a of el.attributes) {
      if (a.name.toLowerCase().startsWith("on")) bad.push(`${el.tagName} has ${a.name}`);
      const url = urlAttrs.includes(a.name.toLowerCase());
      if (url && /^\\s*(javascript|data|vbscript):/i.test(a.value)) {
        bad.push(`${el.tagName} ${a.name}=${a.value.slice(0, 40)}`);
      }
    }
  }
  const ours = OUR_SCRIPTS.map((name) => location.origin + "/static/" + name);
  for (const s of document.scripts) {
    if (!ours.includes(s.src)) bad.push("a script: " + s.outerHTML.slice(0, 60));
  }
  const foreign = "iframe, object, embed, svg, math, base, img, video, audio, frame, marquee, "
    + "template, noscript, body style, main link, meta[http-equiv], x, isindex, plaintext, xmp";
  for (const el of document.querySelectorAll(foreign)) bad.push("an injected " + el.tagName);
  return bad;
}""".replace("OUR_SCRIPTS", json.dumps(OUR_SCRIPTS))


@pytest.fixture
def watched(browser: Any, console: Console) -> Iterator[Watched]:
    context = browser.new_context(
        base_url=console.url, bypass_csp=True, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    try:
        yield Watched(context.new_page(), console.url)
    finally:
        context.close()


def shown(text: str, nul: str = "") -> str:
    """A stored text as the DOM holds it: HTML turns CR LF and CR into LF, and drops NUL
    from text (U+FFFD in a textarea or an attribute: ``nul``)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", nul)


def texts(page: Any, selector: str) -> list[str]:
    found: list[str] = page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")
    return found


def values(page: Any, selector: str) -> list[str]:
    """Form fields' values, with what differs from stored text as the DOM holds it
    turned back (a textarea shows a NUL as U+FFFD)."""
    found: list[str] = page.eval_on_selector_all(selector, "els => els.map(e => e.value)")
    return [v.replace("\ufffd", "") for v in found]


def csrf(page: Any) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return str(token)


def chunks(items: list[str], size: int) -> list[str]:
    out, current = [], ""
    for item in items:
        if current and len(current) + len(item) + 1 > size:
            out.append(current)
            current = ""
        current = f"{current}\n{item}" if current else item
    out.append(current)
    return out


def ingest(console: Console, text: str, *, author: str, name: str) -> int:
    async def work(rt: Runtime) -> int | None:
        await rt.pipeline.opt_in(opt_in())
        result = await rt.pipeline.ingest(
            IncomingMessage(
                channel=channel(),
                message_id=str(uuid.uuid4()),
                author_id=author,
                author_name=name,
                text=text,
                sent_at=datetime.now(UTC),
            )
        )
        return result.case_id if result else None

    case_id = console.call(work)
    assert case_id is not None, text
    return case_id


def user(console: Console, name: str, role: Role = Role.VOLUNTEER) -> User:
    console.add_user(name, role)

    async def get(rt: Runtime) -> User:
        found = await rt.store.user_credentials(name)
        assert found is not None
        return found[0]

    return console.call(get)


# -- chat text ---------------------------------------------------------------------------------


def test_chat_messages_and_display_names(watched: Watched, console: Console) -> None:
    """Every payload as a message and as its author's display name, on the case page;
    and each as a case of its own, in the queue."""
    user(console, "xss-vol")
    author = f"xss-{uuid.uuid4().hex[:8]}"
    case_id = 0
    for payload in PAYLOADS:
        case_id = ingest(console, f"xtc? {payload}", author=author, name=payload)
    queue_cases = {
        ingest(console, f"xtc {payload}", author=f"q-{uuid.uuid4().hex}", name="q"): payload
        for payload in PAYLOADS
    }
    detail = console.call(lambda rt: rt.store.get_case(case_id, context_messages=0))
    stored = [m for m in detail.messages if m.case_id == case_id]
    assert len(stored) == len(PAYLOADS)
    for message, payload in zip(stored, PAYLOADS, strict=True):
        assert message.text == f"xtc? {payload}".replace("\x00", "")[: len(message.text)]
        assert message.author_name == payload.replace("\x00", "")[:200]

    log_in(watched.page, "xss-vol")
    watched.assert_clean("/queue")
    rows = watched.page.eval_on_selector_all(
        "tr[data-case-id]",
        "els => els.map(e => [+e.dataset.caseId, e.querySelector('.excerpt').textContent])",
    )
    excerpts = dict(rows)
    cases = console.call(lambda rt: rt.store.list_cases(limit=1000))
    by_id = {c.id: c for c in cases}
    for cid in queue_cases:
        assert excerpts[cid] == shown(by_id[cid].excerpt)
    watched.goto(f"/cases/{case_id}")
    page_texts = texts(watched.page, "li.message.in-case .text")
    assert page_texts == [shown(m.text) for m in stored]
    names = watched.page.eval_on_selector_all(
        "li.message.in-case .by", "els => els.map(e => e.firstChild.textContent)"
    )
    assert [n.rstrip(" ") for n in names] == [shown(m.author_name).rstrip(" ") for m in stored]
    page_text = watched.page.locator("main").text_content() or ""
    assert "49" not in page_text.replace(str(case_id), "")  # {{7*7}}, ${7*7} not evaluated


def test_channel_titles(watched: Watched, console: Console) -> None:
    """Group titles come from the platform, set by anyone who runs a group."""
    from dataclasses import replace

    titles = PAYLOADS[:40]

    async def setup(rt: Runtime) -> list[int]:
        ids = []
        for n, title in enumerate(titles):
            ref = replace(channel(f"xss-title-{n}"), title=title)
            await rt.pipeline.opt_in(opt_in(ref))
            result = await rt.pipeline.ingest(
                IncomingMessage(
                    channel=ref,
                    message_id="1",
                    author_id=f"title-{n}",
                    author_name="t",
                    text="is xtc gevaarlijk?",
                    sent_at=datetime.now(UTC),
                )
            )
            assert result is not None and result.case_id is not None
            ids.append(result.case_id)
        return ids

    ids = console.call(setup)
    user(console, "xss-titles")
    log_in(watched.page, "xss-titles")
    watched.assert_clean("/queue")
    options = texts(watched.page, "select[name=channel] option")
    for title in titles:
        assert f"{shown(title)} (fake)" in options
    watched.goto(f"/cases/{ids[0]}")
    meta = watched.page.locator("p.meta").first.text_content() or ""
    assert meta.startswith(f"{shown(titles[0])} (fake)")


def test_injection_strings_stored_verbatim_and_the_database_intact(
    watched: Watched, console: Console
) -> None:
    before = console.call(lambda rt: rt.store.list_cases(limit=10_000))
    ids = [
        ingest(console, f"is xtc veilig {text}", author=f"sql-{n}", name=text)
        for n, text in enumerate(INJECTIONS)
    ]
    user(console, "sql-vol")
    log_in(watched.page, "sql-vol")
    for case_id, text in zip(ids, INJECTIONS, strict=True):
        watched.goto(f"/cases/{case_id}")
        assert texts(watched.page, "li.message.in-case .text") == [f"is xtc veilig {text}"]
    after = console.call(lambda rt: rt.store.list_cases(limit=10_000))
    assert len(after) == len(before) + len(INJECTIONS)
    assert console.call(lambda rt: rt.store.faq_entries())
    assert console.call(lambda rt: rt.store.user_credentials("sql-vol")) is not None


# -- replies, four-eyes and their comments --------------------------------------------------


def test_replies_waiting_replies_and_comments(watched: Watched, console: Console) -> None:
    writer = user(console, "xss-writer")
    reviewer = user(console, "xss-reviewer", Role.EXPERT)
    big = "\n".join(PAYLOADS)

    async def setup(rt: Runtime) -> tuple[int, int, int]:
        await rt.pipeline.opt_in(opt_in())

        async def new_case(text: str) -> int:
            result = await rt.pipeline.ingest(
                IncomingMessage(
                    channel=channel(),
                    message_id=str(uuid.uuid4()),
                    author_id=str(uuid.uuid4()),
                    author_name="x",
                    text=text,
                    sent_at=datetime.now(UTC),
                )
            )
            assert result is not None and result.case_id is not None
            return result.case_id

        urgent = "help mijn vriend wordt niet meer wakker na xtc"
        returned = await new_case(urgent)
        pending = await send_reply(
            rt, returned, user=writer, text=big, visibility=Visibility.PUBLIC
        )
        assert isinstance(pending, PendingReply)
        await send_back(rt, pending.id, user=reviewer, comment=big)
        waiting = await new_case(urgent)
        assert isinstance(
            await send_reply(rt, waiting, user=writer, text=big, visibility=Visibility.PUBLIC),
            PendingReply,
        )
        answered = await new_case("is xtc met alcohol gevaarlijk?")
        await send_reply(rt, answered, user=reviewer, text=big, visibility=Visibility.PUBLIC)
        return returned, waiting, answered

    returned, waiting, answered = console.call(setup)
    log_in(watched.page, "xss-writer")
    watched.goto(f"/cases/{returned}")
    note = watched.page.locator("p.flash-error[role=note]").text_content() or ""
    assert note == shown(f"Sent back by xss-reviewer: {big}")
    # The returned text comes back into the writer's editor, as written.
    assert values(watched.page, "#reply-text") == [shown(big)]
    watched.goto(f"/cases/{waiting}")
    assert texts(watched.page, ".pending .text") == [shown(big)]
    watched.goto(f"/cases/{answered}")
    assert texts(watched.page, ".replies .text") == [shown(big)]
    watched.page.context.clear_cookies()
    log_in(watched.page, "xss-reviewer")
    watched.goto(f"/cases/{waiting}")
    assert values(watched.page, ".pending textarea") == [shown(big)]


# -- FAQ editor ------------------------------------------------------------------------------


def test_faq_questions_and_answers_through_the_editor(watched: Watched, console: Console) -> None:
    user(console, "xss-expert", Role.EXPERT)
    log_in(watched.page, "xss-expert")
    entry_id = console.call(lambda rt: rt.store.faq_entries())[0].id
    watched.goto(f"/faq/{entry_id}/edit")
    revision = watched.page.locator("input[name=revision]").get_attribute("value")
    questions = [p for p in PAYLOADS if len(p.splitlines()) == 1]  # one per line
    answer = "\n\n".join(p for p in PAYLOADS if not p.lstrip().startswith("## "))
    response = watched.page.request.post(
        f"/faq/{entry_id}/edit",
        form={
            "csrf_token": csrf(watched.page),
            "revision": str(revision),
            "questions_en": "\n".join(questions),
            "answer_en": answer,
            "questions_nl": questions[0],
            "answer_nl": PAYLOADS[0],
            "substances": "xtc",
            "tags": "",
            "sources": "",
            "review_by": "",
        },
        max_redirects=0,
    )
    assert response.status == 303, response.text()[:500]
    entry, _ = console.call(lambda rt: rt.store.faq_entry(entry_id))
    assert entry.answers["en"] == answer.strip()
    assert entry.questions["en"] == tuple(q.strip() for q in questions if q.strip())
    watched.goto(f"/faq/{entry_id}")
    assert texts(watched.page, "section.lang[lang=en] .text") == [shown(entry.answers["en"])]
    assert texts(watched.page, "section.lang[lang=en] .variants li") == [
        shown(q) for q in entry.questions["en"]
    ]
    assert watched.page.locator("h1").text_content() == shown(entry.question("en"))
    watched.goto(f"/faq/{entry_id}/edit")
    assert values(watched.page, "textarea[name=answer_en]") == [shown(entry.answers["en"])]
    watched.goto("/faq")
    history = console.call(lambda rt: rt.store.faq_history(entry_id))
    newest, previous = history[0].revision, history[1].revision
    watched.goto(f"/faq/{entry_id}/diff?old={previous}&new={newest}")
    diff = watched.page.locator("main").text_content() or ""
    assert shown(PAYLOADS[0]) in diff
    # The editor again after a refusal (a stale revision), with the hostile text in it.
    watched.page.goto(f"/faq/{entry_id}/edit")
    watched.page.evaluate("() => { document.querySelector('input[name=revision]').value = '0'; }")
    watched.page.fill("textarea[name=answer_en]", answer[:3000])
    watched.page.locator("form button[type=submit]").last.click()
    watched.page.wait_for_load_state()
    watched.assert_clean("the editor after a refusal")


# -- playground ------------------------------------------------------------------------------


def test_the_detection_playground(watched: Watched, console: Console) -> None:
    user(console, "xss-play")
    log_in(watched.page, "xss-play")
    for batch in chunks(PAYLOADS, 7000):
        watched.page.goto("/detection")
        watched.page.fill("textarea[name=text]", batch)
        watched.page.locator("main form button[type=submit]").first.click()
        watched.page.wait_for_load_state()
        watched.assert_clean("/detection after a try")
        assert values(watched.page, "textarea[name=text]") == [shown(batch).replace("\x00", "")]


# -- the queue's filters, and the API's search ------------------------------------------------


def test_search_queries_and_filters(watched: Watched, console: Console) -> None:
    user(console, "xss-search")
    log_in(watched.page, "xss-search")
    for payload in PAYLOADS:
        url = "/queue?status=" + quote(payload, safe="")
        response = watched.goto(url)
        assert response.status == 422
        message = watched.page.locator("main p").first.text_content()
        expected = f"status: expected one of open, answered, dismissed, all, got {payload!r}"
        assert message == shown(expected)
    for payload in PAYLOADS[::5]:  # JSON: shown as text by any browser; a sample
        if len(payload) > 2000:
            continue
        response = watched.goto("/api/v1/faq/search?q=" + quote(payload, safe=""))
        assert response.status == 200 and response.json()["query"] == payload


# -- lexicon (last: its edits change detection for this console) -------------------------------


def test_lexicon_terms_notes_and_sources(watched: Watched, console: Console) -> None:
    user(console, "xss-lex", Role.EXPERT)
    log_in(watched.page, "xss-lex")
    watched.goto("/lexicon")
    token = csrf(watched.page)
    refused = 0
    # Through the editor's form for a share of the corpus (each add rebuilds detection),
    # straight into the store for the rest; the page shows them all.
    by_form = PAYLOADS[::3]
    for n, payload in enumerate(by_form):
        response = watched.page.request.post(
            "/lexicon",
            form={
                "csrf_token": token,
                "kind": "urgent",
                "term": f"xssterm{n} {payload}"[:200],
                "language": "nl",
                "note": payload[:1000],
                "source": payload[:300],
                "licence": payload[:100],
            },
            max_redirects=0,
        )
        assert response.status in (303, 422), response.status
        refused += response.status == 422
    rest = [p for p in PAYLOADS if p not in by_form]
    expert = console.call(lambda rt: rt.store.user_credentials("xss-lex"))
    assert expert is not None

    async def add_rest(rt: Runtime) -> None:
        for n, payload in enumerate(rest):
            await rt.store.add_lexicon_edit(
                kind="urgent",
                term=f"xssterm-s{n} {payload}"[:200],
                substance=None,
                strong=False,
                context=(),
                language="nl",
                note=payload[:1000],
                source=payload[:300],
                licence=payload[:100],
                author=expert[0].id,
            )
        await rt.detector.refresh(rt.store)

    console.call(add_rest)
    edits = console.call(lambda rt: rt.store.lexicon_edits())
    ours = [e for e in edits if e.term.startswith("xssterm")]
    assert len(ours) + refused == len(PAYLOADS) and len(ours) >= 100
    watched.goto("/lexicon")
    shown_terms = set(texts(watched.page, "td strong"))
    shown_notes = set(texts(watched.page, "td small"))
    for edit in ours:
        assert shown(edit.term) in shown_terms
        if edit.note:
            assert shown(edit.note) in shown_notes
    # A refused edit comes back in the form, hostile values and all.
    watched.page.fill("#lx-term", "   ")
    watched.page.evaluate(
        "v => { for (const n of ['note', 'source', 'licence', 'context']) "
        "document.querySelector(`[name=${n}]`).value = v; }",
        f'"><script>{JS}</script><img src=x onerror={JS}>',
    )
    watched.page.evaluate("() => document.querySelector('#lx-term').removeAttribute('required')")
    with watched.page.expect_navigation():
        watched.page.locator("#lx-term").evaluate("e => e.form.submit()")
    watched.assert_clean("/lexicon after a refusal")
    note_value = watched.page.locator("#lx-note").input_value()
    assert note_value == f'"><script>{JS}</script><img src=x onerror={JS}>'
    # Detection still works with all of it in the lexicon.
    assert console.post("is xtc met alcohol gevaarlijk?", author=f"after-{uuid.uuid4()}")


def test_the_check_catches_a_payload_rendered_raw(watched: Watched) -> None:
    """The same payloads put into a page unescaped are caught: the check is not blind."""
    caught = 0
    sample = [p for p in PAYLOADS if "<" in p][:40]
    for payload in sample:
        watched.page.set_content(f"<main><div>{payload}</div></main>")
        watched.page.wait_for_timeout(60)
        found = watched.page.evaluate(CHECK)
        caught += bool(found or watched.dialogs)
        watched.dialogs.clear()
    assert caught >= len(sample) * 0.8, f"only {caught} of {len(sample)} caught"

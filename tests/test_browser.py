"""The console in a real headless Chromium: what only a browser shows.

`peerdesk run`'s own runner serves the console (uvicorn on 127.0.0.1, a free port, a real
SQLite store) in a thread with its own event loop; the tests drive Debian's chromium
through Playwright and reach the running program through :meth:`Console.call`. Every
page visited is checked with axe-core (installed by ``scripts/setup`` from npm) for
serious or critical accessibility violations.

Run with ``pytest -m browser`` (``scripts/check`` runs them); locally they are skipped
when chromium, Playwright or axe-core is missing, and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from bot import schema
from bot.models import Role, Visibility
from bot.passwords import hash_password
from bot.runner import run
from bot.runtime import Runtime
from tests.conftest import PASSWORD, _missing, make_settings
from tests.fakes import FakeAdapter, message, opt_in

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
T = TypeVar("T")


class Console:
    """A running console (the real runner, port 0) in a thread with its own event loop."""

    def __init__(self, folder: Path, seeded: Path) -> None:
        database = folder / "peerdesk.db"
        for suffix in ("", "-wal", "-shm"):
            source = seeded.with_name(seeded.name + suffix)
            if source.exists():
                shutil.copyfile(source, database.with_name(database.name + suffix))
        self.settings = make_settings(folder, f"sqlite+aiosqlite:///{database}")
        self.loop = asyncio.new_event_loop()
        self.fake = FakeAdapter()
        self.url = ""
        self.rt: Runtime | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)

    def _app(self, rt: Runtime) -> Any:
        from console.app import create_app

        self.rt = rt
        # Replies go to the fake platform: the outbox delivers them as it would to Telegram.
        rt.adapters[self.fake.platform] = self.fake
        return create_app(rt)

    def _on_ready(self, url: str) -> None:
        self.url = url
        self._ready.set()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            await run(
                self.settings,
                app_factory=self._app,
                stop=self._stop,
                host="127.0.0.1",
                port=0,
                on_ready=self._on_ready,
            )

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"the console did not start: {self._error!r}")

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def call(self, work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(runtime)`` on the console's own event loop and wait for it."""
        assert self.rt is not None
        return asyncio.run_coroutine_threadsafe(work(self.rt), self.loop).result(30)

    def add_user(self, name: str, role: Role = Role.VOLUNTEER, *, trained: bool = True) -> None:
        self.call(
            lambda rt: rt.store.add_user(name, hash_password(PASSWORD), role, trained=trained)
        )

    def post(self, text: str, *, author: str = "user-1") -> int:
        """A chat message arrives from an opted-in group; returns its case id."""

        async def ingest(rt: Runtime) -> int | None:
            await rt.pipeline.opt_in(opt_in())
            result = await rt.pipeline.ingest(message(text, str(uuid.uuid4()), author=author))
            return result.case_id if result else None

        case_id = self.call(ingest)
        assert case_id is not None, text
        return case_id


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, seeded_sqlite: Path) -> Iterator[Console]:
    server = Console(tmp_path_factory.mktemp("browser"), seeded_sqlite)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def log_in(page: Any, username: str) -> None:
    page.goto("/queue")
    assert page.url.endswith("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/queue")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE.exists():
        _missing(f"axe-core is not installed ({AXE}; run scripts/setup)")
    # Evaluated through the DevTools protocol, so the page's strict CSP does not block it.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def no_horizontal_overflow(page: Any) -> bool:
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def test_log_in_and_the_pages_are_accessible(page: Any, console: Console) -> None:
    console.add_user("ada")
    case_id = console.post("is xtc met alcohol gevaarlijk?", author="a1")
    page.goto("/login")
    assert axe_violations(page) == []
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong username or password."
    log_in(page, "ada")
    assert page.locator(f'tr[data-case-id="{case_id}"]').is_visible()
    assert axe_violations(page) == []
    page.goto(f"/cases/{case_id}")
    assert page.get_by_role("heading", level=1).inner_text().startswith(f"Case #{case_id}")
    assert axe_violations(page) == []


def test_a_flagged_message_appears_in_the_open_queue(page: Any, console: Console) -> None:
    console.add_user("bea")
    log_in(page, "bea")
    page.evaluate("() => { window.notReloaded = true; }")
    page.locator("body[data-live-state=open]").wait_for(state="attached")
    started = time.monotonic()
    case_id = console.post("wie heeft er nog keta voor zaterdag, en is dat veilig?", author="b1")
    row = page.locator(f'tr[data-case-id="{case_id}"]')
    row.wait_for(state="visible", timeout=5_000)
    shown_after = time.monotonic() - started
    assert page.evaluate("() => window.notReloaded") is True  # no reload
    assert "keta" in row.inner_text()
    assert page.get_by_role("status").inner_text() == "The queue was updated."
    print(f"live queue: a new case shown {shown_after * 1000:.0f} ms after it was filed")


def test_claim_from_the_queue(page: Any, console: Console) -> None:
    console.add_user("cas")
    case_id = console.post("hoeveel mdma is te veel?", author="c1")
    log_in(page, "cas")
    row = page.locator(f'tr[data-case-id="{case_id}"]')
    with page.expect_navigation():  # from the queue back to the queue: the URL is no sign
        row.get_by_role("button", name=f"Claim case #{case_id}").click()
    assert page.get_by_role("status").first.inner_text() == f"You have case #{case_id}."
    assert row.locator(".claimed").inner_text() == "You"
    page.goto(f"/cases/{case_id}")
    assert "You have this case" in page.locator(".claim-panel").inner_text()
    page.get_by_role("button", name=f"Release case #{case_id}").click()
    assert "Nobody has claimed this case yet." in page.locator(".claim-panel").inner_text()


def test_reply_from_a_suggestion(page: Any, console: Console) -> None:
    console.add_user("dan")
    case_id = console.post("is het gevaarlijk om xtc en alcohol te mixen?", author="d1")
    log_in(page, "dan")
    page.goto(f"/cases/{case_id}")
    suggestion = page.locator(".suggestion").first
    answer = suggestion.locator(".a").inner_text()
    suggestion.get_by_role("link", name="Use this answer").click()
    textarea = page.get_by_label("Reply text")
    assert textarea.input_value().strip() == answer.strip()
    textarea.fill(textarea.input_value() + "\n\nTake care!")
    page.get_by_role("button", name="Send").click()
    assert page.get_by_role("status").first.inner_text() == (
        "Reply approved and queued for delivery."
    )
    reply = page.locator(".replies .reply").first
    assert "Take care!" in reply.inner_text()
    assert reply.locator(".reply-status").inner_text() in ("queued", "sent")
    deadline = time.monotonic() + 10
    while not any("Take care!" in m.text for m in console.fake.sent):
        assert time.monotonic() < deadline, "the reply was not delivered"
        time.sleep(0.05)
    page.reload()
    assert page.locator(".replies .reply .reply-status").first.inner_text() == "sent"


def test_phone_sized_queue_and_case_page(browser: Any, console: Console) -> None:
    console.add_user("eve")
    long_word = "x" * 300
    case_id = console.post(f"xtc {long_word} met alcohol?", author="e1")
    context = browser.new_context(base_url=console.url, viewport=PHONE, is_mobile=True)
    try:
        page = context.new_page()
        log_in(page, "eve")
        assert page.locator(f'tr[data-case-id="{case_id}"]').is_visible()
        assert no_horizontal_overflow(page)
        assert axe_violations(page) == []
        page.goto(f"/cases/{case_id}")
        assert no_horizontal_overflow(page)
        assert page.get_by_role("button", name="Send").is_visible()
        assert axe_violations(page) == []
    finally:
        context.close()


def test_an_urgent_case_notifies_a_volunteer_on_duty(browser: Any, console: Console) -> None:
    console.add_user("fay")
    context = browser.new_context(base_url=console.url)
    # A recording stand-in for the browser's Notification (headless shows none).
    context.add_init_script(
        """
        window.shown = [];
        window.Notification = class {
            constructor(title, options) { window.shown.push([title, options.body]); }
            static requestPermission() { return Promise.resolve("granted"); }
        };
        window.Notification.permission = "granted";
        """
    )
    try:
        page = context.new_page()
        log_in(page, "fay")
        console.post("is xtc veilig?", author="f0")  # not urgent: no alert
        page.get_by_role("button", name="Go on duty").click()
        assert "On duty" in page.locator(".duty").inner_text()
        page.locator("body[data-live-state=open]").wait_for(state="attached")
        case_id = console.post("help mijn vriend ademt niet meer na G", author="f1")
        page.wait_for_function("() => window.shown.length > 0", timeout=5_000)
        shown = page.evaluate("() => window.shown")
        assert shown == [
            [f"Urgent case #{case_id}", "An urgent case is waiting and nobody has claimed it."]
        ]
    finally:
        context.close()


def test_an_expert_teaches_detection_a_term_and_a_volunteer_dismisses(
    page: Any, console: Console
) -> None:
    console.add_user("kim", Role.EXPERT)
    log_in(page, "kim")
    text = "wie heeft er nog zwaluwtjes voor zaterdag? hoeveel neem jij"
    page.goto("/detection")
    assert axe_violations(page) == []
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Check").click()
    assert "NOT FLAGGED" in page.locator(".verdict").inner_text()
    assert axe_violations(page) == []

    page.get_by_role("link", name="Edit the lexicon").click()
    assert axe_violations(page) == []
    page.get_by_label("A term for a substance").check()
    page.get_by_label("Term or phrase").fill("zwaluwtjes")
    page.get_by_label("Substance (for a term)").select_option("mdma")
    page.get_by_label("Source (required)").fill("seen in our channels")
    page.get_by_role("button", name="Add", exact=True).click()
    assert "Added 'zwaluwtjes'" in page.get_by_role("status").first.inner_text()
    assert "zwaluwtjes" in page.locator("table.lexicon-edits").inner_text()
    assert axe_violations(page) == []

    page.goto("/detection")
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Check").click()
    verdict = page.locator(".verdict").inner_text()
    assert "FLAGGED" in verdict and "NOT FLAGGED" not in verdict and "zwaluwtjes" in verdict

    case_id = console.post("heeft iemand coke, hoeveel kost dat", author="f1")
    page.goto(f"/cases/{case_id}")
    page.get_by_label("Spam or a bot").check()
    page.get_by_role("button", name="Dismiss").click()
    page.wait_for_url("**/queue")
    assert f"Case #{case_id} dismissed" in page.get_by_role("status").first.inner_text()
    assert page.locator(f'tr[data-case-id="{case_id}"]').count() == 0


def test_four_eyes_an_urgent_reply_waits_for_a_second_approver(
    browser: Any, console: Console
) -> None:
    console.add_user("gus")
    console.add_user("hal", Role.EXPERT)
    case_id = console.post("help mijn vriendin wordt niet meer wakker na g", author="g1")
    writer = browser.new_context(base_url=console.url)
    reviewer = browser.new_context(base_url=console.url)
    try:
        page = writer.new_page()
        log_in(page, "gus")
        page.goto(f"/cases/{case_id}")
        page.get_by_label("Reply text").fill("Bel 112 en blijf bij haar.")
        page.get_by_role("button", name="Send").click()
        assert (
            "a second approver has to look at it" in page.get_by_role("status").first.inner_text()
        )
        assert "Someone else has to approve it" in page.locator(".four-eyes").inner_text()
        assert axe_violations(page) == []

        other = reviewer.new_page()
        log_in(other, "hal")
        other.goto(f"/cases/{case_id}")
        box = other.get_by_label("The reply (edit it if needed)")
        assert box.input_value() == "Bel 112 en blijf bij haar."
        assert axe_violations(other) == []
        box.fill("Bel nu 112 en blijf bij haar. Leg haar op haar zij.")
        other.get_by_role("button", name="Approve and send").click()
        assert other.get_by_role("status").first.inner_text() == "Approved and queued for delivery."
        deadline = time.monotonic() + 10
        while not any("Leg haar op haar zij." in m.text for m in console.fake.sent):
            assert time.monotonic() < deadline, "the approved reply was not delivered"
            time.sleep(0.05)
    finally:
        writer.close()
        reviewer.close()


def test_escalate_to_an_expert_and_get_the_answer(browser: Any, console: Console) -> None:
    console.add_user("ida")
    console.add_user("jan", Role.EXPERT)
    case_id = console.post("kan je 2cb en ketamine combineren?", author="i1")
    volunteer = browser.new_context(base_url=console.url)
    expert = browser.new_context(base_url=console.url)
    try:
        page = volunteer.new_page()
        log_in(page, "ida")
        page.goto(f"/cases/{case_id}")
        page.get_by_label("Note or question").fill("Wat zeggen we over 2C-B met keta?")
        page.get_by_role("button", name="Ask the experts").click()
        assert "waiting for an answer" in page.locator("#notes").inner_text()
        assert axe_violations(page) == []
        page.goto("/queue")  # the volunteer works on; the answer will find them there
        page.wait_for_selector('body[data-live-state="open"]')

        other = expert.new_page()
        log_in(other, "jan")
        other.goto("/questions")
        assert axe_violations(other) == []
        other.get_by_role("link", name="Open the case to answer").first.click()
        other.get_by_label("Your answer as an expert").fill("Samen onvoorspelbaar: lage dosis.")
        other.get_by_role("button", name="Answer", exact=True).click()
        assert "Answer saved" in other.get_by_role("status").first.inner_text()
        assert other.locator("#expert-answer").count() == 0  # told to the one who asked

        told = page.locator("#expert-answer")
        told.wait_for()
        assert told.inner_text() == f"An expert answered your question on case #{case_id}."
        told.get_by_role("link").click()
        page.wait_for_url(f"**/cases/{case_id}#notes")
        notes = page.locator("#notes").inner_text()
        assert "Samen onvoorspelbaar: lage dosis." in notes and "waiting for an answer" not in notes
    finally:
        volunteer.close()
        expert.close()


def test_reports_signals_and_audit_log_are_accessible(page: Any, console: Console) -> None:
    console.add_user("rita", Role.COORDINATOR)
    case_id = console.post("is xtc met alcohol gevaarlijk?", author="r1")

    async def answer(rt: Runtime) -> None:
        user = await rt.store.user_credentials("rita")
        assert user is not None
        await rt.store.approve_reply(
            case_id,
            text="Liever niet samen.",
            visibility=Visibility.PUBLIC,
            written_by=user[0].id,
            approved_by=user[0].id,
            entry_id="combo_mdma_alcohol",
        )

    console.call(answer)
    log_in(page, "rita")
    page.get_by_role("link", name="Reports").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Reports"
    assert page.get_by_role("img", name="Answers given per week").is_visible()
    assert page.locator("#summary").inner_text().count("Answers given") == 1
    assert axe_violations(page) == []
    page.locator("form.filters select[name=language]").select_option("nl")
    page.get_by_role("button", name="Show").click()
    assert "language=nl" in page.url
    assert axe_violations(page) == []
    page.get_by_role("link", name="Signals").click()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Signals")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Audit log").click()
    assert page.get_by_text("reply.approve").first.is_visible()
    assert axe_violations(page) == []


def test_a_coordinator_invites_someone_who_chooses_a_password_and_logs_in(
    browser: Any, console: Console
) -> None:
    console.add_user("uma", Role.COORDINATOR)
    console.call(lambda rt: rt.pipeline.opt_in(opt_in()))
    # The coordinator works on a phone: the People and Channels pages must fit it.
    coordinator = browser.new_context(base_url=console.url, viewport=PHONE, is_mobile=True)
    invitee = browser.new_context(base_url=console.url)
    try:
        page = coordinator.new_page()
        log_in(page, "uma")
        page.get_by_role("link", name="People").click()
        assert page.get_by_role("heading", level=1).inner_text() == "People"
        assert no_horizontal_overflow(page)
        assert axe_violations(page) == []
        page.get_by_label("Role", exact=True).select_option("expert")
        page.get_by_label("Trained (may claim and answer cases)").check()
        page.get_by_role("button", name="Create invitation link").click()
        link = page.get_by_label("Invitation link").input_value()
        assert link.startswith(f"{console.url}/invite/")
        assert no_horizontal_overflow(page)
        assert axe_violations(page) == []

        other = invitee.new_page()
        other.goto(link)
        assert "as expert" in other.locator("main").inner_text()
        assert axe_violations(other) == []
        other.get_by_label("Username").fill("vic")
        other.get_by_label("New password", exact=True).fill("vic's own long password")
        other.get_by_label("New password again").fill("vic's own long password")
        other.get_by_role("button", name="Create my account").click()
        other.wait_for_url("**/login")
        assert "Welcome, vic" in other.get_by_role("status").first.inner_text()
        other.get_by_label("Username").fill("vic")
        other.get_by_label("Password").fill("vic's own long password")
        other.get_by_role("button", name="Log in").click()
        other.wait_for_url("**/queue")
        assert "vic" in other.locator(".who").inner_text()
        other.goto(link)  # a second use: refused, and the page says why
        assert "has been used already" in other.get_by_role("alert").inner_text()
        assert axe_violations(other) == []

        page.goto("/people")
        row = page.locator("tr", has_text="vic")
        assert "expert" in row.inner_text()
        page.get_by_role("link", name="Channels").click()
        assert "Paused means not read" in page.locator("main").inner_text()
        assert no_horizontal_overflow(page)
        assert axe_violations(page) == []
    finally:
        coordinator.close()
        invitee.close()


def test_the_language_switch(page: Any, console: Console) -> None:
    """Nederlands, then Français, from the switch in the header: the same page comes back
    in that language, and the choice stays with the account after a reload."""
    console.add_user("noor")
    log_in(page, "noor")
    page.goto("/faq")
    nav = page.get_by_role("navigation")
    assert nav.get_by_role("link", name="Queue").is_visible()
    page.get_by_role("button", name="Nederlands").click()
    page.wait_for_url("**/faq")
    assert page.locator("html").get_attribute("lang") == "nl"
    assert nav.get_by_role("link", name="Wachtrij").is_visible()
    assert nav.get_by_role("link", name="Antwoorden").is_visible()
    assert "Queue" not in nav.inner_text()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Français").click()
    page.wait_for_url("**/faq")
    assert nav.get_by_role("link", name="File d'attente").is_visible()
    page.reload()
    assert page.locator("html").get_attribute("lang") == "fr"
    assert nav.get_by_role("link", name="Réponses").is_visible()
    assert page.get_by_role("button", name="Français").get_attribute("aria-current") == "true"
    assert axe_violations(page) == []


def test_keyboard_shortcuts_on_the_queue_and_the_case_page(page: Any, console: Console) -> None:
    console.add_user("lou")
    first = console.post("hoeveel mdma is te veel voor een eerste keer?", author="k1")
    second = console.post("kan je ketamine en alcohol combineren?", author="k2")
    log_in(page, "lou")
    links = page.locator('#queue-live a[data-focus-key^="open-"]')
    order = [links.nth(i).get_attribute("data-focus-key") for i in range(links.count())]
    assert f"open-{first}" in order and f"open-{second}" in order
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.focusKey") == order[0]
    target = order.index(f"open-{second}")
    for _ in range(target):
        page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.focusKey") == f"open-{second}"
    with page.expect_navigation():  # from the queue back to the queue
        page.keyboard.press("c")  # claims the chosen case, and only that one
    assert page.get_by_role("status").first.inner_text() == f"You have case #{second}."
    row = page.locator(f'tr[data-case-id="{first}"]')
    assert row.locator(".claimed").count() == 0
    page.keyboard.press("?")  # the list of keys opens
    assert page.locator("#shortcuts").get_attribute("open") is not None
    assert page.locator("#shortcuts dl").is_visible()
    assert axe_violations(page) == []

    page.goto(f"/cases/{second}")
    answer = page.locator(".suggestion").first.locator(".a").inner_text()
    page.keyboard.press("1")  # the first suggestion goes into the reply
    page.wait_for_url(f"**/cases/{second}?use=*")
    reply = page.get_by_label("Reply text")
    assert reply.input_value().strip() == answer.strip()
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "reply-text"
    page.keyboard.type("j")  # typed into the reply, not taken as a shortcut
    assert reply.input_value().strip().endswith("j")
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    assert page.evaluate("document.activeElement.id") == "note-text"
    detail = console.call(lambda rt: rt.store.get_case(second))
    assert detail.replies == ()  # no key sent anything
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    page.wait_for_url("**/queue")


def test_an_expert_edits_an_faq_entry_previews_saves_and_publishes(
    page: Any, console: Console
) -> None:
    console.add_user("max", Role.EXPERT)
    log_in(page, "max")
    page.goto("/faq/festival_tips")
    assert "revision 1" in page.locator("p.meta").first.inner_text()
    page.get_by_role("link", name="Edit").click()
    answer = page.get_by_label("Answer").nth(2)  # nl, fr, en: the English one
    text = "Drink water by the glass, rest in the shade, and keep an eye on each other."
    answer.fill(text)
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("section.preview")
    assert text in preview.inner_text()
    assert axe_violations(page) == []
    assert console.call(lambda rt: rt.store.faq_entry("festival_tips"))[1] == 1  # not saved
    page.get_by_role("button", name="Save as a new revision").click()
    assert page.get_by_role("status").first.inner_text() == "Saved as revision 2."
    assert "revision 2" in page.locator("p.meta").first.inner_text()
    page.get_by_role("button", name="Publish").click()
    assert page.locator("p.meta .badge").first.inner_text() == "published"
    entry, revision = console.call(lambda rt: rt.store.faq_entry("festival_tips"))
    assert (entry.status, entry.answers["en"], revision) == ("published", text, 3)
    history = page.locator("ol.history li")
    assert history.count() == 3  # the seed, the edit, the publication
    assert "max" in history.first.inner_text()


def test_a_volunteer_links_their_phone_for_urgent_alerts(page: Any, console: Console) -> None:
    console.add_user("lina")
    console.call(_runs_telegram)
    log_in(page, "lina")
    page.get_by_role("link", name="lina · volunteer").click()
    page.wait_for_url("**/account")
    assert page.get_by_text("Telegram: not linked").is_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Go on duty").click()
    page.wait_for_url("**/account")
    page.get_by_role("button", name="Get a code to link an account").click()
    code = page.locator("code.link-code").inner_text()
    assert page.get_by_text(f"/link {code}").is_visible()
    assert axe_violations(page) == []

    async def link(rt: Runtime) -> str:
        return await rt.pipeline.link_account("telegram", "4242", code)

    assert console.call(link).startswith("Linked to lina.")
    page.goto("/account")
    assert page.get_by_text("Telegram: linked since").is_visible()
    case_id = console.post("mijn vriend wordt niet wakker na G", author="a-urgent")

    async def alerts(rt: Runtime) -> list[str]:
        async with rt.store.engine.connect() as conn:
            rows = await conn.execute(sa.select(schema.outbox.c.text, schema.outbox.c.kind))
            return [r.text for r in rows if r.kind == "alert"]

    [alert] = console.call(alerts)
    assert f"urgent case {case_id} (fake)" in alert
    page.get_by_role("button", name="Unlink").click()
    assert page.get_by_text("Unlinked: no more urgent alerts on Telegram.").is_visible()
    assert console.call(alerts) == []  # not sent yet, so not sent at all
    console.call(_runs_telegram_no_more)


async def _runs_telegram(rt: Runtime) -> None:
    rt.elsewhere.add("telegram")  # as if a `peerdesk bot` process ran Telegram


async def _runs_telegram_no_more(rt: Runtime) -> None:
    rt.elsewhere.discard("telegram")

"""Urgent alerts by private message: linking a volunteer's own account with a one-time
code, queuing one alert a round through the outbox, and unlinking."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest

from bot import private_alerts
from bot import schema as t
from bot.adapter import RecipientUnreachable
from bot.models import OutgoingMessage, User, Visibility, utcnow
from bot.outbox import OutboxWorker
from bot.pipeline import LINK_ANSWERS
from bot.runtime import Runtime
from console import claims
from tests.conftest import CSRF_RE, add_user, flagged_case, login
from tests.fakes import FakeAdapter, message, opt_in

URGENT_TEXT = "mijn vriend wordt niet wakker na G, hij ademt raar"


async def _on_duty_linked(rt: Runtime, name: str = "vol", platform: str = "fake") -> User:
    user = await add_user(rt, name)
    await rt.store.set_on_duty(user.id, True)
    code = await private_alerts.new_code(rt.store, user.id)
    answer = await rt.pipeline.link_account(platform, f"{name}-account", code)
    assert answer == LINK_ANSWERS["linked"].format(username=name)
    return user


async def _urgent_case(rt: Runtime, message_id: str = "u1") -> int:
    await rt.pipeline.opt_in(opt_in())
    result = await rt.pipeline.ingest(message(URGENT_TEXT, message_id, author="someone"))
    assert result is not None and result.case_id is not None
    assert result.detection is not None and result.detection.urgent
    return result.case_id


async def _alerts(rt: Runtime, now: datetime | None = None) -> list[tuple[str, str]]:
    """(recipient account, text) of every alert due by ``now``, oldest first."""
    deliveries = await rt.store.claim_deliveries(
        now=now or utcnow(), lease=timedelta(seconds=1), limit=100
    )
    return [
        (d.recipient or "", d.item.text)
        for d in deliveries
        if d.item.kind == "alert" and d.item.visibility is Visibility.PRIVATE
    ]


# -- linking --------------------------------------------------------------------------------


async def test_a_code_links_an_account_once(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    code = await private_alerts.new_code(runtime.store, vol.id)
    assert len(code) == 9 and code[4] == "-"
    # Typed on a phone: lower case, without the dash.
    typed = code.replace("-", "").lower()
    answer = await runtime.pipeline.link_account("telegram", "12345", typed)
    assert answer == LINK_ANSWERS["linked"].format(username="vol")
    [link] = await private_alerts.links(runtime.store, vol.id)
    assert (link.platform, link.reachable) == ("telegram", True)
    # Spent: a second use (by anyone) links nothing.
    assert await runtime.pipeline.link_account("telegram", "999", code) == LINK_ANSWERS["unknown"]
    assert [e["action"] for e in await runtime.store.audit_events("user")][-1] == "alerts.link"


async def test_a_code_expires_and_a_new_one_replaces_the_old(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    old = await private_alerts.new_code(runtime.store, vol.id)
    new = await private_alerts.new_code(runtime.store, vol.id)
    assert await runtime.pipeline.link_account("telegram", "1", old) == LINK_ANSWERS["unknown"]
    late = utcnow() + timedelta(minutes=private_alerts.LINK_CODE_MINUTES + 1)
    assert await private_alerts.redeem(runtime.store, new, "telegram", "1", now=late) is None
    assert await private_alerts.redeem(runtime.store, "", "telegram", "1") is None
    assert await private_alerts.links(runtime.store, vol.id) == []


async def test_a_code_shown_in_a_group_is_spent_without_linking(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    code = await private_alerts.new_code(runtime.store, vol.id)
    answer = await runtime.pipeline.link_account("telegram", "1", code, private=False)
    assert answer == LINK_ANSWERS["not_private"]
    assert await runtime.pipeline.link_account("telegram", "1", code) == LINK_ANSWERS["unknown"]
    assert await private_alerts.links(runtime.store, vol.id) == []


async def test_a_deactivated_volunteer_cannot_link(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    code = await private_alerts.new_code(runtime.store, vol.id)
    await runtime.store.set_user_active(vol.id, False)
    assert await runtime.pipeline.link_account("telegram", "1", code) == LINK_ANSWERS["unknown"]


async def test_one_account_alerts_one_volunteer(runtime: Runtime) -> None:
    first = await add_user(runtime, "first")
    second = await add_user(runtime, "second")
    for user in (first, second):
        code = await private_alerts.new_code(runtime.store, user.id)
        await runtime.pipeline.link_account("telegram", "shared-phone", code)
    assert await private_alerts.links(runtime.store, first.id) == []
    assert [link.platform for link in await private_alerts.links(runtime.store, second.id)] == [
        "telegram"
    ]


async def test_switched_off_by_the_operator(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    code = await private_alerts.new_code(runtime.store, vol.id)
    console = replace(runtime.settings.console, private_alerts=False)
    runtime.pipeline.settings = replace(runtime.settings, console=console)
    assert await runtime.pipeline.link_account("telegram", "1", code) == LINK_ANSWERS["off"]
    assert runtime.alerts is not None
    runtime.alerts.settings = runtime.pipeline.settings
    await _on_duty_vol_linked_directly(runtime, "other")
    await _urgent_case(runtime)
    assert await _alerts(runtime) == []


async def _on_duty_vol_linked_directly(rt: Runtime, name: str) -> User:
    user = await add_user(rt, name)
    await rt.store.set_on_duty(user.id, True)
    code = await private_alerts.new_code(rt.store, user.id)
    assert await private_alerts.redeem(rt.store, code, "fake", f"{name}-account") is not None
    return user


# -- alerting -------------------------------------------------------------------------------


async def test_an_urgent_case_alerts_the_linked_volunteers_on_duty(runtime: Runtime) -> None:
    await _on_duty_linked(runtime, "vol")
    off = await _on_duty_linked(runtime, "resting")
    await runtime.store.set_on_duty(off.id, False)
    await add_user(runtime, "unlinked")  # on duty or not, nowhere to write
    await flagged_case(runtime)  # not urgent: no alert
    case_id = await _urgent_case(runtime)
    [(to, text)] = await _alerts(runtime)
    assert to == "vol-account"
    assert f" {case_id} " in text and "/unlink" in text
    # The chat's words stay in the console.
    assert "wakker" not in text and "ademt" not in text


async def test_one_alert_a_round_and_at_most_max_rounds(runtime: Runtime) -> None:
    await _on_duty_linked(runtime)
    case_id = await _urgent_case(runtime)
    alerts = runtime.alerts
    assert alerts is not None
    assert await alerts.alert(case_id) == 0  # this round's is queued already
    [opened] = (await runtime.store.unclaimed_urgent_cases()).values()
    every = timedelta(minutes=runtime.settings.console.alert_minutes)
    sent = [await alerts.alert(case_id, now=opened + every * r + every / 2) for r in range(6)]
    # Round 0 was queued at ingest; rounds 1..MAX_ROUNDS-1 now, then no more.
    assert sent == [0] + [1] * (private_alerts.MAX_ROUNDS - 1) + [0, 0]
    assert len(await _alerts(runtime, now=opened + every * 10)) == private_alerts.MAX_ROUNDS


async def test_the_minutes_check_alerts_again_until_someone_claims(runtime: Runtime) -> None:
    vol = await _on_duty_linked(runtime)
    case_id = await _urgent_case(runtime)
    assert len(await _alerts(runtime)) == 1
    alerts = runtime.alerts
    assert alerts is not None
    [opened] = (await runtime.store.unclaimed_urgent_cases()).values()
    later = opened + timedelta(minutes=runtime.settings.console.alert_minutes, seconds=5)
    assert await alerts.alert_all([case_id], now=later) == 1
    await claims.claim(runtime, case_id, vol)
    much_later = later + timedelta(minutes=runtime.settings.console.alert_minutes)
    assert await alerts.alert_all([case_id], now=much_later) == 0


async def test_the_link_in_an_alert_follows_public_url(runtime: Runtime) -> None:
    alerts = runtime.alerts
    assert alerts is not None
    console = replace(runtime.settings.console, public_url="https://desk.example.org/")
    alerts.settings = replace(runtime.settings, console=console)
    text = alerts.text(42, "telegram", 12, "fr")
    assert "https://desk.example.org/cases/42" in text
    assert "urgent 42 (Telegram)" in text and "12 min" in text
    alerts.settings = runtime.settings  # no public_url: no link
    assert "http" not in alerts.text(42, "telegram", 12, "nl")


# -- delivering -----------------------------------------------------------------------------


async def test_the_outbox_delivers_an_alert_privately(runtime: Runtime) -> None:
    await _on_duty_linked(runtime)
    case_id = await _urgent_case(runtime)
    adapter = FakeAdapter("fake")
    worker = OutboxWorker(runtime.store, {"fake": adapter}, runtime.settings.outbox)
    await worker.run_once()
    alerts = [m for m in adapter.sent if m.recipient_id == "vol-account"]
    assert len(alerts) == 1
    [sent] = alerts
    assert sent.visibility is Visibility.PRIVATE and sent.reply_to_message_id is None
    assert str(case_id) in sent.text


async def test_a_refused_account_is_marked_and_not_tried_again(runtime: Runtime) -> None:
    vol = await _on_duty_linked(runtime)
    case_id = await _urgent_case(runtime)
    adapter = FakeAdapter("fake")
    # The opt-in notice goes out; the alert is refused by the platform.
    worker = OutboxWorker(runtime.store, {"fake": adapter}, runtime.settings.outbox)
    original = adapter.send

    async def refuse_alerts(msg: OutgoingMessage) -> str:
        if msg.recipient_id == "vol-account":
            raise RecipientUnreachable("the volunteer blocked the bot")
        return await original(msg)

    adapter.send = refuse_alerts  # type: ignore[method-assign]
    await worker.run_once()
    [link] = await private_alerts.links(runtime.store, vol.id)
    assert not link.reachable
    alerts = runtime.alerts
    assert alerts is not None
    [opened] = (await runtime.store.unclaimed_urgent_cases()).values()
    later = opened + timedelta(minutes=runtime.settings.console.alert_minutes, seconds=5)
    assert await alerts.alert(case_id, now=later) == 0
    # Linking again makes it reachable.
    code = await private_alerts.new_code(runtime.store, vol.id)
    await runtime.pipeline.link_account("fake", "vol-account", code)
    [link] = await private_alerts.links(runtime.store, vol.id)
    assert link.reachable


async def test_unlinking_drops_the_alerts_not_yet_sent(runtime: Runtime) -> None:
    vol = await _on_duty_linked(runtime)
    await _urgent_case(runtime)
    answer = await runtime.pipeline.unlink_account("fake", "vol-account")
    assert answer == LINK_ANSWERS["unlinked"]
    assert await _alerts(runtime) == []
    assert await private_alerts.links(runtime.store, vol.id) == []
    assert (
        await runtime.pipeline.unlink_account("fake", "vol-account") == (LINK_ANSWERS["not_linked"])
    )
    # The record keeps who and when, not the address.
    async with runtime.store.engine.connect() as conn:
        rows = (await conn.execute(t.alert_links.select())).all()
    assert [(r.platform_user_id, r.unlinked_at is not None) for r in rows] == [("", True)]


async def test_privacy_delete_unlinks_the_account_too(runtime: Runtime) -> None:
    vol = await _on_duty_linked(runtime)
    await runtime.pipeline.erase_person("fake", "vol-account")
    assert await private_alerts.links(runtime.store, vol.id) == []


async def test_an_alert_queued_before_unlinking_in_the_console_is_not_sent(
    runtime: Runtime,
) -> None:
    vol = await _on_duty_linked(runtime)
    await _urgent_case(runtime)
    assert await private_alerts.unlink(runtime.store, vol.id, "fake")
    assert not await private_alerts.unlink(runtime.store, vol.id, "fake")
    adapter = FakeAdapter("fake")
    await OutboxWorker(runtime.store, {"fake": adapter}, runtime.settings.outbox).run_once()
    assert [m for m in adapter.sent if m.recipient_id] == []


# -- the account page -----------------------------------------------------------------------


async def test_the_account_page_links_and_unlinks(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "vol")
    await login(client, "vol")
    page = await client.get("/account")
    assert page.status_code == 200
    assert "No Telegram or Discord bot runs here" in page.text
    runtime.elsewhere.add("telegram")  # a `peerdesk bot` process runs Telegram
    page = await client.get("/account")
    assert "not linked" in page.text
    csrf = CSRF_RE.search(page.text)
    assert csrf is not None
    shown = await client.post("/account/code", data={"csrf_token": csrf.group(1)})
    assert shown.status_code == 200
    code = shown.text.split('<code class="link-code">')[1].split("<")[0]
    assert f"/link {code}" in shown.text
    answer = await runtime.pipeline.link_account("telegram", "777", code)
    assert answer.startswith("Linked to vol.")
    page = await client.get("/account")
    assert "linked since" in page.text
    gone = await client.post(
        "/account/unlink", data={"platform": "telegram", "csrf_token": csrf.group(1)}
    )
    assert gone.status_code == 303
    page = await client.get("/account")
    assert "Unlinked: no more urgent alerts on Telegram." in page.text
    assert "not linked" in page.text


@pytest.mark.parametrize("opened_minutes_ago, expected", [(0, 0), (9, 0), (10, 1), (25, 2)])
def test_alert_round(opened_minutes_ago: int, expected: int) -> None:
    now = utcnow()
    opened = now - timedelta(minutes=opened_minutes_ago)
    assert private_alerts.alert_round(opened, now, timedelta(minutes=10)) == expected
    assert private_alerts.alert_round(opened, now, timedelta(0)) == 0

"""The runtime's housekeeping for claims: lapsed claims released, urgent cases re-alerted."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import bot.runtime
from bot.events import (
    CaseEvent,
    CaseEventKind,
    LocalBroadcaster,
    PostgresBroadcaster,
    Subscription,
)
from bot.models import utcnow
from bot.runtime import Runtime, build_runtime
from console import claims
from tests.conftest import add_user, flagged_case, make_settings
from tests.fakes import message, opt_in


class Clock:
    """The runtime's idea of now, moved by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(bot.runtime, "utcnow", fake)
    return fake


def _drain(sub: Subscription) -> list[CaseEvent]:
    events = []
    while not sub.queue.empty():
        item = sub.queue.get_nowait()
        assert isinstance(item, CaseEvent)
        events.append(item)
    return events


async def test_a_claim_lapses_after_the_set_minutes_without_action(
    runtime: Runtime, clock: Clock
) -> None:
    vol = await add_user(runtime, "vol")
    case_id = await flagged_case(runtime)
    await claims.claim(runtime, case_id, vol)
    async with runtime.events.subscribe() as events:
        clock.now += timedelta(minutes=runtime.settings.console.claim_minutes - 1)
        await runtime.check_claims()
        assert (await runtime.store.get_case(case_id)).case.claimed_by == vol.id
        clock.now += timedelta(minutes=2)
        await runtime.check_claims()
        assert (await runtime.store.get_case(case_id)).case.claimed_by is None
        assert [(e.kind, e.case_id) for e in _drain(events)] == [(CaseEventKind.CLAIMED, case_id)]


async def test_an_unclaimed_urgent_case_alerts_again(runtime: Runtime, clock: Clock) -> None:
    await runtime.pipeline.opt_in(opt_in())
    result = await runtime.pipeline.ingest(
        message("mijn vriend wordt niet wakker na G", "u1", author="other")
    )
    assert result is not None and result.case_id is not None
    urgent = result.case_id
    await flagged_case(runtime)  # not urgent: never alerts
    every = timedelta(minutes=runtime.settings.console.alert_minutes)
    async with runtime.events.subscribe() as events:
        await runtime.check_claims()
        assert _drain(events) == []  # just opened: its opening event was the alert
        clock.now = utcnow() + every  # the clock started before the case was opened
        await runtime.check_claims()
        assert [(e.kind, e.case_id, e.urgent) for e in _drain(events)] == [
            (CaseEventKind.ALERT, urgent, True)
        ]
        clock.now += every / 2
        await runtime.check_claims()
        assert _drain(events) == []
        vol = await add_user(runtime, "vol")
        await claims.claim(runtime, urgent, vol)
        _drain(events)
        clock.now += every  # (the claim itself is still fresh)
        await runtime.check_claims()
        assert _drain(events) == []  # claimed: someone is on it
        assert runtime.alerted == {}


async def test_the_broadcaster_follows_the_database(runtime: Runtime) -> None:
    expected = LocalBroadcaster if runtime.store.is_sqlite else PostgresBroadcaster
    assert isinstance(runtime.events, expected)


@pytest.mark.postgres
async def test_two_instances_run_the_shared_jobs_once(
    tmp_path: Path, postgres_url: str, clock: Clock
) -> None:
    """Two runtimes on one PostgreSQL database run their maintenance at the same moment:
    the urgent case is re-alerted once, heard once by each instance's console."""
    settings = make_settings(tmp_path, postgres_url)
    one = await build_runtime(settings)
    two = await build_runtime(settings)
    try:
        await one.pipeline.opt_in(opt_in())
        result = await one.pipeline.ingest(
            message("mijn vriend wordt niet wakker na G", "u1", author="other")
        )
        assert result is not None and result.case_id is not None
        every = timedelta(minutes=settings.console.alert_minutes)
        async with one.events.subscribe() as here, two.events.subscribe() as there:
            await asyncio.sleep(0.3)  # the opening event, heard by both
            _drain(here), _drain(there)
            clock.now = utcnow() + every
            for _ in range(3):  # each tick: both instances at once
                await asyncio.gather(one.maintain(), two.maintain())
                await asyncio.sleep(0.3)  # notifications travel
                alerts = [[(e.kind, e.case_id) for e in _drain(sub)] for sub in (here, there)]
                assert alerts == [[(CaseEventKind.ALERT, result.case_id)]] * 2
                clock.now += every
        assert [one.leader.holding, two.leader.holding].count(True) == 1
        holder, other = (one, two) if one.leader.holding else (two, one)
        await holder.leader.release()  # it stops: the other takes the jobs over
        await other.maintain()
        assert other.leader.holding
    finally:
        await one.close()
        await two.close()


async def test_an_embedding_model_that_will_not_load_degrades_and_says_so(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken model folder does not stop peerdesk: suggestions fall back to words,
    detection to the lexicon, and the log, /healthz and every console page say why."""
    import httpx

    from console.app import create_app
    from tests.conftest import login

    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    settings = make_settings(
        tmp_path,
        database_url,
        PEERDESK_KNOWLEDGE_BASE_EMBEDDER=f"sentence-transformers:{broken}",
        PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE="hybrid",
        PEERDESK_DETECTION_MODE="trained",
    )
    rt = await build_runtime(settings)
    try:
        assert len(rt.degraded) == 1 and str(broken) in rt.degraded[0]
        assert any("could not be loaded" in r.message for r in caplog.records)
        assert rt.faq.embedder is None and rt.faq.mode == "lexical"
        case_id = await flagged_case(rt, "is xtc met alcohol gevaarlijk?")  # still flagged
        detail = await rt.store.get_case(case_id)
        assert detail.suggestions  # and still suggested, by words
        await add_user(rt, "vera")
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://c.test") as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"
            assert health.json()["degraded"] == rt.degraded
            await login(client, "vera")
            page = (await client.get("/queue")).text
            assert "peerdesk runs in a lesser mode" in page and str(broken) in page
    finally:
        await rt.close()


async def test_a_working_model_is_not_degraded(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, PEERDESK_KNOWLEDGE_BASE_SEARCH_MODE="hybrid")
    rt = await build_runtime(settings)
    try:
        assert rt.degraded == []
        assert rt.faq.embedder is not None and rt.faq.mode == "hybrid"
    finally:
        await rt.close()

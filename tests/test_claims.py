"""The claim rules shared by the console's pages and API, and the events they publish."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.events import CaseEventKind
from bot.models import Role
from bot.runtime import Runtime
from console import claims
from tests.conftest import add_user, flagged_case
from tests.fakes import message


async def test_claims_publish_an_event_for_the_live_queue(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    case_id = await flagged_case(runtime)
    async with runtime.events.subscribe() as events:
        await claims.claim(runtime, case_id, vol)
        await claims.release(runtime, case_id, vol)
        for _ in range(2):
            event = await events.get()
            assert event is not None and (event.kind, event.case_id) == (
                CaseEventKind.CLAIMED,
                case_id,
            )
    assert (await runtime.store.get_case(case_id)).case.claimed_by is None


async def test_who_may_claim(runtime: Runtime) -> None:
    case_id = await flagged_case(runtime)
    untrained = await runtime.store.add_user("new", "h", Role.VOLUNTEER, trained=False)
    with pytest.raises(claims.NotAllowed, match="only trained volunteers"):
        await claims.claim(runtime, case_id, untrained)
    # Experts and coordinators need no training flag.
    for name, role in (("exp", Role.EXPERT), ("cora", Role.COORDINATOR)):
        user = await runtime.store.add_user(name, "h", role, trained=False)
        await claims.claim(runtime, case_id, user)
        await claims.release(runtime, case_id, user)


async def test_the_limit_comes_from_the_settings(runtime: Runtime) -> None:
    runtime.settings = replace(
        runtime.settings, console=replace(runtime.settings.console, max_claims=1)
    )
    vol = await add_user(runtime, "vol")
    first = await flagged_case(runtime, "xtc en alcohol?")
    other = await runtime.pipeline.ingest(message("hoeveel ketamine is te veel?", "k", author="b"))
    assert other is not None and other.case_id is not None
    second = other.case_id
    assert first != second
    await claims.claim(runtime, first, vol)
    with pytest.raises(claims.ClaimRefused, match="already hold 1 open cases"):
        await claims.claim(runtime, second, vol)


async def test_only_coordinators_reassign_and_only_to_who_may_claim(runtime: Runtime) -> None:
    case_id = await flagged_case(runtime)
    vol = await add_user(runtime, "vol")
    exp = await add_user(runtime, "exp", Role.EXPERT)
    cora = await add_user(runtime, "cora", Role.COORDINATOR)
    untrained = await runtime.store.add_user("new", "h", Role.VOLUNTEER, trained=False)
    for who in (vol, exp):
        with pytest.raises(claims.NotAllowed):
            await claims.assign(runtime, case_id, vol.id, by=who)
    with pytest.raises(claims.ClaimRefused, match="not trained"):
        await claims.assign(runtime, case_id, untrained.id, by=cora)
    await runtime.store.set_user_active(exp.id, False)
    with pytest.raises(claims.ClaimRefused, match="no such active account"):
        await claims.assign(runtime, case_id, exp.id, by=cora)
    given = await claims.assign(runtime, case_id, vol.id, by=cora)
    assert given == vol
    assert [u.username for u in await claims.assignees(runtime)] == ["cora", "vol"]


async def test_opening_the_case_keeps_the_claim_alive(runtime: Runtime) -> None:
    vol = await add_user(runtime, "vol")
    other = await add_user(runtime, "other")
    case_id = await flagged_case(runtime)
    await claims.claim(runtime, case_id, vol)
    assert await runtime.store.touch_claim(
        case_id, vol.id, lapsed_before=runtime.claim_lapsed_before()
    )
    await claims.seen(runtime, case_id, other)  # someone else looking changes nothing
    assert (await runtime.store.get_case(case_id)).case.claimed_by == vol.id

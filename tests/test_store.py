"""The store on real SQLite and real PostgreSQL (the `database_url` fixture runs both)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.models import (
    CaseStatus,
    Detection,
    DismissReason,
    OutboxStatus,
    Reason,
    ReplyStatus,
    Role,
    Visibility,
)
from bot.store import Conflict, NotFound, Store, StoreError, SuggestionRow
from knowledge_base import Entry
from tests.fakes import channel, message

FLAG = Detection(
    True, False, 0.8, (Reason("substance", "xtc", "MDMA / XTC", 0.6),), "nl", ("mdma",)
)
URGENT = Detection(True, True, 0.95, (Reason("urgent", "ademt niet", "danger", 0.95),), "nl", ())
CALM = Detection(False, False, 0.0, (), "nl", ())


def entry(entry_id: str = "combo_x", status: str = "in_review", answer: str = "Hi") -> Entry:
    return Entry(
        id=entry_id,
        topic=entry_id,
        status=status,
        questions={"nl": ("vraag",), "en": ("question",)},
        answers={"nl": f"{answer} nl", "en": f"{answer} en"},
    )


async def opted_in(store: Store, chat_id: str = "chat-1") -> int:
    ch, _ = await store.opt_in(
        channel(chat_id), consent_by="admin", at=datetime.now(UTC), notice="hello"
    )
    return ch.id


async def test_secret_is_created_once_and_kept(store: Store) -> None:
    first = await store.get_or_create_secret("x")
    assert len(first) >= 40
    assert await store.get_or_create_secret("x") == first
    assert await store.get_or_create_secret("y") != first


async def test_users_and_tokens(store: Store) -> None:
    user = await store.add_user("ann", "hash", Role.EXPERT, trained=False)
    assert (user.username, user.role, user.trained) == ("ann", Role.EXPERT, False)
    with pytest.raises(StoreError, match="already exists"):
        await store.add_user("ann", "hash", Role.VOLUNTEER)
    found = await store.user_credentials("ann")
    assert found is not None and found[1] == "hash"
    assert await store.user_credentials("nobody") is None
    await store.add_token(user.id, "a" * 64)
    assert await store.user_for_token("a" * 64) == user
    assert await store.user_for_token("b" * 64) is None


async def test_opt_in_records_consent_and_queues_notice_once(store: Store) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ch, changed = await store.opt_in(channel(), consent_by="adm", at=at, notice="hello")
    assert changed is True
    assert (ch.opted_in, ch.consent_by, ch.consent_at, ch.language) == (True, "adm", at, "nl")
    again, changed = await store.opt_in(channel(), consent_by="adm", at=at, notice="hello")
    assert changed is False and again.id == ch.id
    items = await store.outbox_items()
    assert [(i.text, i.status) for i in items] == [("hello", OutboxStatus.PENDING)]


async def test_message_is_stored_once(store: Store) -> None:
    ch = await opted_in(store)
    first = await store.insert_message(ch, message("hoi", "42"), "p1")
    again = await store.insert_message(ch, message("hoi again", "42"), "p1")
    assert first[1] is True and again == (first[0], False)
    stored = await store.get_message(first[0])
    assert (stored.text, stored.author, stored.flagged) == ("hoi", "p1", False)
    assert [m.id for m, _ in await store.undetected_messages()] == [first[0]]


async def test_file_message_creates_case_with_suggestions(store: Store) -> None:
    ch = await opted_in(store)
    await store.save_faq_entry(entry(), author="t")
    msg_id, _ = await store.insert_message(ch, message("xtc?", "1"), "p1")
    case_id = await store.file_message(
        msg_id, FLAG, case_id=None, suggestions=[SuggestionRow("combo_x", 1, 2.5, ("xtc",))]
    )
    detail = await store.get_case(case_id)
    assert detail.case.status is CaseStatus.OPEN
    assert [m.text for m in detail.messages] == ["xtc?"]
    assert [r.term for r in detail.case.reasons] == ["xtc"]
    assert detail.case.substances == ("mdma",)
    assert [(s.entry_id, s.why, s.answer) for s in detail.suggestions] == [
        ("combo_x", ("xtc",), "Hi nl")
    ]
    assert await store.undetected_messages() == []


async def test_follow_up_joins_case_and_raises_urgency(store: Store) -> None:
    ch = await opted_in(store)
    first, _ = await store.insert_message(ch, message("xtc?", "1"), "p1")
    case_id = await store.file_message(first, FLAG, case_id=None, suggestions=[])
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert await store.find_thread_case(ch, "p1", reply_to_message_id=None, active_since=since) == (
        case_id
    )
    assert (
        await store.find_thread_case(ch, "p2", reply_to_message_id=None, active_since=since) is None
    )
    assert await store.find_thread_case(ch, "p2", reply_to_message_id="1", active_since=since) == (
        case_id
    )
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert (
        await store.find_thread_case(ch, "p1", reply_to_message_id=None, active_since=later) is None
    )
    second, _ = await store.insert_message(ch, message("hij ademt niet", "2"), "p1")
    assert await store.file_message(second, URGENT, case_id=case_id, suggestions=None) == case_id
    case = (await store.get_case(case_id)).case
    assert (case.urgent, case.score) == (True, 0.95)


async def test_queue_is_urgent_first_then_oldest(store: Store) -> None:
    ch = await opted_in(store)
    ids = []
    for n, detection in enumerate([FLAG, FLAG, URGENT]):
        msg_id, _ = await store.insert_message(
            ch, message(f"m{n}", str(n), author=f"a{n}"), f"p{n}"
        )
        ids.append(await store.file_message(msg_id, detection, case_id=None, suggestions=[]))
    queue = await store.list_cases()
    assert [c.id for c in queue] == [ids[2], ids[0], ids[1]]
    assert await store.list_cases(statuses=(CaseStatus.ANSWERED,)) == []


async def test_case_context_shows_earlier_messages(store: Store) -> None:
    ch = await opted_in(store)
    for n in range(4):
        msg_id, _ = await store.insert_message(ch, message(f"chat {n}", str(n)), "p0")
        await store.record_detection(msg_id, CALM)
    msg_id, _ = await store.insert_message(ch, message("xtc?", "9"), "p1")
    case_id = await store.file_message(msg_id, FLAG, case_id=None, suggestions=[])
    detail = await store.get_case(case_id, context_messages=2)
    assert [m.text for m in detail.messages] == ["chat 2", "chat 3", "xtc?"]
    with pytest.raises(NotFound):
        await store.get_case(999)


async def test_approving_a_reply_writes_reply_outbox_and_audit_together(store: Store) -> None:
    ch = await opted_in(store)
    user = await store.add_user("vol", "h", Role.VOLUNTEER)
    msg_id, _ = await store.insert_message(ch, message("xtc?", "77"), "p1")
    case_id = await store.file_message(msg_id, FLAG, case_id=None, suggestions=[])
    reply = await store.approve_reply(
        case_id,
        text="Take care",
        visibility=Visibility.PUBLIC,
        written_by=user.id,
        approved_by=user.id,
    )
    assert (reply.status, reply.approved_by_name) == (ReplyStatus.QUEUED, "vol")
    case = (await store.get_case(case_id)).case
    assert (case.status, case.claimed_by) == (CaseStatus.ANSWERED, user.id)
    outbox = [i for i in await store.outbox_items() if i.reply_id == reply.id]
    assert [(i.text, i.reply_to_message_id) for i in outbox] == [("Take care", "77")]
    actions = [e["action"] for e in await store.audit_events("reply")]
    assert actions == ["reply.approve"]
    with pytest.raises(NotFound):
        await store.approve_reply(
            999, text="x", visibility=Visibility.PUBLIC, written_by=user.id, approved_by=user.id
        )


async def test_deliveries_are_leased_and_retaken_after_a_crash(store: Store) -> None:
    await opted_in(store)  # queues the opt-in notice
    now = datetime.now(UTC)
    lease = timedelta(seconds=30)
    (first,) = await store.claim_deliveries(now=now, lease=lease)
    assert (first.item.attempts, first.channel.chat_id) == (1, "chat-1")
    assert await store.claim_deliveries(now=now, lease=lease) == []  # leased
    (again,) = await store.claim_deliveries(now=now + timedelta(seconds=31), lease=lease)
    assert (again.item.id, again.item.attempts) == (first.item.id, 2)
    await store.mark_retry(first.item.id, error="down", next_attempt_at=now + timedelta(hours=1))
    assert await store.claim_deliveries(now=now + timedelta(minutes=1), lease=lease) == []
    (retry,) = await store.claim_deliveries(now=now + timedelta(hours=2), lease=lease)
    await store.mark_sent(retry.item.id, platform_message_id="p-1", at=now)
    assert [i.status for i in await store.outbox_items()] == [OutboxStatus.SENT]
    assert await store.claim_deliveries(now=now + timedelta(days=1), lease=lease) == []


async def test_failed_delivery_marks_reply_failed(store: Store) -> None:
    ch = await opted_in(store)
    user = await store.add_user("vol", "h", Role.VOLUNTEER)
    msg_id, _ = await store.insert_message(ch, message("xtc?", "5"), "p1")
    case_id = await store.file_message(msg_id, FLAG, case_id=None, suggestions=[])
    reply = await store.approve_reply(
        case_id, text="x", visibility=Visibility.PUBLIC, written_by=user.id, approved_by=user.id
    )
    item = next(i for i in await store.outbox_items() if i.reply_id == reply.id)
    await store.mark_failed(item.id, error="bot was removed")
    (stored,) = (await store.get_case(case_id)).replies
    assert (stored.status, stored.error) == (ReplyStatus.FAILED, "bot was removed")


async def test_faq_saves_make_revisions_only_on_change(store: Store) -> None:
    assert await store.save_faq_entry(entry(), author="seed") == 1
    assert await store.save_faq_entry(entry(), author="seed") == 1
    assert await store.save_faq_entry(entry(answer="Changed"), author="ann") == 2
    assert (
        await store.save_faq_entry(entry(answer="Changed", status="published"), author="ann") == 3
    )
    assert await store.faq_revision_count("combo_x") == 3
    (saved,) = await store.faq_entries(["published"])
    assert saved.answers["en"] == "Changed en"
    assert await store.faq_entries(["draft"]) == []
    assert await store.faq_count() == 1


async def test_contacts_keep_the_latest_address(store: Store) -> None:
    await store.remember_contact("p1", "fake", "u1")
    await store.remember_contact("p1", "fake", "u1-new")
    ch = await opted_in(store)
    user = await store.add_user("vol", "h", Role.VOLUNTEER)
    msg_id, _ = await store.insert_message(ch, message("xtc?", "5"), "p1")
    case_id = await store.file_message(msg_id, FLAG, case_id=None, suggestions=[])
    await store.approve_reply(
        case_id, text="x", visibility=Visibility.PRIVATE, written_by=user.id, approved_by=user.id
    )
    deliveries = await store.claim_deliveries(now=datetime.now(UTC), lease=timedelta(seconds=5))
    private = [d for d in deliveries if d.item.visibility is Visibility.PRIVATE]
    assert [d.recipient for d in private] == ["u1-new"]


async def test_naive_datetimes_are_refused(store: Store) -> None:
    ch = await opted_in(store)
    naive = message("x", "1")
    naive = type(naive)(**{**naive.__dict__, "sent_at": datetime(2026, 1, 1)})
    with pytest.raises(Exception, match="naive datetime"):
        await store.insert_message(ch, naive, "p1")


# -- claims ---------------------------------------------------------------------------


async def _cases(store: Store, n: int, detection: Detection = FLAG) -> list[int]:
    ch = await opted_in(store)
    ids = []
    for i in range(n):
        msg_id, _ = await store.insert_message(ch, message(f"xtc {i}", f"c{i}"), f"p{i}")
        ids.append(await store.file_message(msg_id, detection, case_id=None, suggestions=[]))
    return ids


def _ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_two_people_claiming_at_once_one_gets_it(store: Store) -> None:
    ids = await _cases(store, 5)
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    bob = await store.add_user("bob", "h", Role.VOLUNTEER)
    for case_id in ids:
        results = await asyncio.gather(
            store.claim_case(case_id, ann.id, lapsed_before=_ago(30), max_claims=10),
            store.claim_case(case_id, bob.id, lapsed_before=_ago(30), max_claims=10),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "NoneType"]
        (refusal,) = [r for r in results if r is not None]
        case = (await store.get_case(case_id)).case
        assert case.claimed_by_name is not None
        assert f"claimed by {case.claimed_by_name}" in str(refusal)
    claims = [e for e in await store.audit_events("case") if e["action"] == "case.claim"]
    assert len(claims) == len(ids)


async def test_a_claim_is_renewed_released_and_limited(store: Store) -> None:
    first, second, third = await _cases(store, 3)
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    bob = await store.add_user("bob", "h", Role.VOLUNTEER)
    for case_id in (first, second):
        await store.claim_case(case_id, ann.id, lapsed_before=_ago(30), max_claims=2)
    await store.claim_case(first, ann.id, lapsed_before=_ago(30), max_claims=2)  # renews
    with pytest.raises(Conflict, match="already hold 2 open cases"):
        await store.claim_case(third, ann.id, lapsed_before=_ago(30), max_claims=2)
    with pytest.raises(Conflict, match="claimed by ann"):
        await store.release_case(first, bob.id)
    await store.release_case(first, ann.id)
    assert (await store.get_case(first)).case.claimed_by is None
    await store.claim_case(third, ann.id, lapsed_before=_ago(30), max_claims=2)
    with pytest.raises(Conflict, match="nobody holds"):
        await store.release_case(first, ann.id)
    with pytest.raises(NotFound):
        await store.claim_case(999, ann.id, lapsed_before=_ago(30), max_claims=2)


async def test_a_lapsed_claim_no_longer_holds(store: Store) -> None:
    (case_id,) = await _cases(store, 1)
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    bob = await store.add_user("bob", "h", Role.VOLUNTEER)
    await store.claim_case(case_id, ann.id, lapsed_before=_ago(30), max_claims=3)
    # Ann's action renews her claim; a lapsed one is not revived by a late touch.
    assert await store.touch_claim(case_id, ann.id, lapsed_before=_ago(30))
    assert not await store.touch_claim(case_id, bob.id, lapsed_before=_ago(30))
    with pytest.raises(Conflict, match="claimed by ann"):
        await store.approve_reply(
            case_id,
            text="hi",
            visibility=Visibility.PUBLIC,
            written_by=bob.id,
            approved_by=bob.id,
            claim_lapsed_before=_ago(30),
        )
    later = _ago(-1)  # as if claim_minutes had passed since Ann's last action
    assert not await store.touch_claim(case_id, ann.id, lapsed_before=later)
    assert await store.release_lapsed_claims(_ago(30)) == []
    await store.claim_case(case_id, bob.id, lapsed_before=later, max_claims=3)
    assert (await store.get_case(case_id)).case.claimed_by == bob.id


async def test_lapsed_claims_are_released_and_replies_may_take_them(store: Store) -> None:
    first, second = await _cases(store, 2)
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    bob = await store.add_user("bob", "h", Role.VOLUNTEER)
    for case_id in (first, second):
        await store.claim_case(case_id, ann.id, lapsed_before=_ago(30), max_claims=3)
    reply = await store.approve_reply(
        first,
        text="hi",
        visibility=Visibility.PUBLIC,
        written_by=bob.id,
        approved_by=bob.id,
        claim_lapsed_before=_ago(-1),
    )
    assert reply.approved_by_name == "bob"
    case = (await store.get_case(first)).case
    assert (case.status, case.claimed_by) == (CaseStatus.ANSWERED, bob.id)
    assert await store.release_lapsed_claims(_ago(-1)) == [second]
    assert (await store.get_case(second)).case.claimed_by is None
    # An answered case keeps who handled it.
    assert (await store.get_case(first)).case.claimed_by == bob.id


async def test_a_coordinator_reassigns_whoever_holds_it(store: Store) -> None:
    (case_id,) = await _cases(store, 1)
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    bob = await store.add_user("bob", "h", Role.VOLUNTEER)
    coord = await store.add_user("cora", "h", Role.COORDINATOR)
    await store.claim_case(case_id, ann.id, lapsed_before=_ago(30), max_claims=3)
    await store.assign_case(case_id, bob.id, by=coord.id)
    assert (await store.get_case(case_id)).case.claimed_by_name == "bob"
    await store.assign_case(case_id, None, by=coord.id)
    assert (await store.get_case(case_id)).case.claimed_by is None
    assign = [e for e in await store.audit_events("case") if e["action"] == "case.assign"]
    assert [(e["actor"], e["details"]) for e in assign] == [
        (coord.id, {"from": ann.id, "to": bob.id}),
        (coord.id, {"from": bob.id, "to": None}),
    ]
    await store.approve_reply(
        case_id, text="hi", visibility=Visibility.PUBLIC, written_by=ann.id, approved_by=ann.id
    )
    with pytest.raises(Conflict, match="answered"):
        await store.assign_case(case_id, bob.id, by=coord.id)
    with pytest.raises(Conflict, match="answered"):
        await store.claim_case(case_id, bob.id, lapsed_before=_ago(30), max_claims=3)


async def test_unclaimed_urgent_cases_are_what_re_alerting_reads(store: Store) -> None:
    ch = await opted_in(store)
    ids = []
    for n, detection in enumerate((FLAG, URGENT, URGENT, URGENT)):
        msg_id, _ = await store.insert_message(ch, message(f"m{n}", str(n)), f"p{n}")
        ids.append(await store.file_message(msg_id, detection, case_id=None, suggestions=[]))
    calm, waiting, taken, closed = ids
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    await store.claim_case(taken, ann.id, lapsed_before=_ago(30), max_claims=3)
    await store.dismiss_case(closed, ann.id, DismissReason.SPAM)
    found = await store.unclaimed_urgent_cases()
    assert list(found) == [waiting]
    opened = (await store.get_case(waiting)).case.created_at
    assert found[waiting] == opened and opened.tzinfo is not None
    assert calm not in found


async def test_queue_filters(store: Store) -> None:
    first = await opted_in(store, "chat-1")
    second, _ = await store.opt_in(
        replace(channel("chat-2"), platform="other"), consent_by="a", at=_ago(0), notice=None
    )
    fr = replace(FLAG, language="fr")
    ids = []
    for ch, detection, n in ((first, FLAG, 1), (first, URGENT, 2), (second.id, fr, 3)):
        msg_id, _ = await store.insert_message(ch, message(f"m{n}", str(n)), f"p{n}")
        ids.append(await store.file_message(msg_id, detection, case_id=None, suggestions=[]))
    ann = await store.add_user("ann", "h", Role.VOLUNTEER)
    await store.claim_case(ids[2], ann.id, lapsed_before=_ago(30), max_claims=3)

    async def listed(**filters: object) -> list[int]:
        return [c.id for c in await store.list_cases(**filters)]  # type: ignore[arg-type]

    assert await listed() == [ids[1], ids[0], ids[2]]
    assert await listed(urgent=True) == [ids[1]]
    assert await listed(urgent=False) == [ids[0], ids[2]]
    assert await listed(language="fr") == [ids[2]]
    assert await listed(platform="other") == [ids[2]]
    assert await listed(channel_id=first) == [ids[1], ids[0]]
    assert await listed(claimed_by=ann.id) == [ids[2]]
    assert await listed(language="fr", urgent=True) == []


async def test_on_duty_and_the_list_of_users(store: Store) -> None:
    ann = await store.add_user("ann", "h", Role.VOLUNTEER, trained=False)
    await store.add_user("bob", "h", Role.EXPERT, trained=False)
    assert not ann.on_duty and not ann.may_claim
    await store.set_on_duty(ann.id, True)
    users = await store.list_users()
    assert [(u.username, u.on_duty, u.may_claim) for u in users] == [
        ("ann", True, False),
        ("bob", False, True),
    ]

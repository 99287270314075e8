"""Urgent alerts by private message to a volunteer's own Telegram or Discord account.

A volunteer who wants them asks the console (their account page) for a one-time code and
sends it to the bot in a private chat: ``/link CODE`` on Telegram, the ``/link`` command
on Discord. From then on, while they are on duty, an urgent case nobody has claimed
alerts them there too: at once, and again every ``console.alert_minutes`` while it stays
unclaimed, at most ``MAX_ROUNDS`` times a case. ``/unlink`` (or the account page) stops it.

An alert names the case, its platform and how long it has waited, with a link to it when
``console.public_url`` is set. It carries none of the chat's words: those stay in the
console. Alerts go through the outbox like every other message (retried through outages
and rate limits); each has a key (case, volunteer, round) that the database keeps
unique, so two instances, or a repeated minute, never send the same alert twice.

Only the code's SHA-256 is stored, for ``LINK_CODE_MINUTES``; it works once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bot import schema as t
from bot.models import CaseStatus, OutboxStatus, User, Visibility, utcnow
from bot.passwords import token_hash
from bot.settings import Settings
from bot.store import Store, _user_from_row
from prompts import Prompts

logger = logging.getLogger(__name__)

LINK_CODE_MINUTES = 15
# The first alert and three more, alert_minutes apart; after that the console's own
# re-alerts carry on, and a volunteer's phone is not woken all night by one case.
MAX_ROUNDS = 4
# No 0/O, 1/I/L: read off a screen and typed on a phone.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
PLATFORMS = ("telegram", "discord")
PLATFORM_NAMES = {"telegram": "Telegram", "discord": "Discord", "demo": "demo"}


@dataclass(frozen=True)
class AlertLink:
    """A volunteer's account on one platform; ``reachable`` is False once the platform
    refused to deliver to it (they blocked the bot)."""

    id: int
    user_id: int
    platform: str
    linked_at: datetime
    reachable: bool


def normalise_code(text: str) -> str:
    """A code as typed: any case, with or without its dash or spaces."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _hash(code: str) -> str:
    return token_hash(normalise_code(code))


async def new_code(store: Store, user_id: int, *, now: datetime | None = None) -> str:
    """A fresh one-time code for ``user_id`` (``ABCD-EFGH``); their earlier ones stop
    working."""
    now = now or utcnow()
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    async with store.engine.begin() as conn:
        await conn.execute(t.link_codes.delete().where(t.link_codes.c.user_id == user_id))
        await conn.execute(
            t.link_codes.delete().where(t.link_codes.c.expires_at <= now)  # tidy up
        )
        await conn.execute(
            t.link_codes.insert().values(
                code_hash=_hash(code),
                user_id=user_id,
                created_at=now,
                expires_at=now + timedelta(minutes=LINK_CODE_MINUTES),
            )
        )
    return f"{code[:4]}-{code[4:]}"


async def discard(store: Store, code: str) -> None:
    """Spend a code without linking (it was shown where others could read it)."""
    async with store.engine.begin() as conn:
        await conn.execute(t.link_codes.delete().where(t.link_codes.c.code_hash == _hash(code)))


async def redeem(
    store: Store,
    code: str,
    platform: str,
    platform_user_id: str,
    *,
    now: datetime | None = None,
) -> User | None:
    """Link ``platform_user_id`` to the volunteer whose code this is; None when the code
    is unknown, used or expired (or its volunteer deactivated). The code is spent in the
    same transaction, so it works once. A platform account alerts one volunteer: linking
    it again moves it."""
    now = now or utcnow()
    if not normalise_code(code):
        return None
    async with store.engine.begin() as conn:
        user_id = await conn.scalar(
            t.link_codes.delete()
            .where(t.link_codes.c.code_hash == _hash(code), t.link_codes.c.expires_at > now)
            .returning(t.link_codes.c.user_id)
        )
        if user_id is None:
            return None
        row = (await conn.execute(sa.select(t.users).where(t.users.c.id == user_id))).first()
        if row is None or not row.active:
            return None
        mine = sa.and_(t.alert_links.c.user_id == user_id, t.alert_links.c.platform == platform)
        # The same account linked by someone else before: it is theirs no longer.
        await _forget(
            conn,
            sa.and_(
                t.alert_links.c.platform == platform,
                t.alert_links.c.platform_user_id == platform_user_id,
                sa.not_(mine),
            ),
            now,
        )
        fresh = {
            "platform_user_id": platform_user_id,
            "linked_at": now,
            "unlinked_at": None,
            "unreachable_at": None,
        }
        updated = await conn.execute(t.alert_links.update().where(mine).values(**fresh))
        if not updated.rowcount:
            await conn.execute(
                t.alert_links.insert().values(user_id=user_id, platform=platform, **fresh)
            )
        await store._audit(conn, user_id, "alerts.link", "user", user_id, {"platform": platform})
    return _user_from_row(row)


async def _forget(conn: Any, where: Any, now: datetime) -> int:
    """Unlink: keep who and when, forget the address; alerts not yet sent are not sent."""
    ids = list((await conn.scalars(sa.select(t.alert_links.c.id).where(where))).all())
    if not ids:
        return 0
    await conn.execute(
        t.outbox.delete().where(
            t.outbox.c.alert_link_id.in_(ids),
            t.outbox.c.status.in_([OutboxStatus.PENDING.value, OutboxStatus.SENDING.value]),
        )
    )
    await conn.execute(
        t.alert_links.update()
        .where(t.alert_links.c.id.in_(ids))
        .values(platform_user_id="", unlinked_at=now)
    )
    return len(ids)


async def unlink(store: Store, user_id: int, platform: str, *, by: int | None = None) -> bool:
    """The volunteer's account on ``platform`` alerts them no more (from the console)."""
    async with store.engine.begin() as conn:
        done = await _forget(
            conn,
            sa.and_(
                t.alert_links.c.user_id == user_id,
                t.alert_links.c.platform == platform,
                t.alert_links.c.unlinked_at.is_(None),
            ),
            utcnow(),
        )
        if done:
            await store._audit(
                conn, by or user_id, "alerts.unlink", "user", user_id, {"platform": platform}
            )
    return bool(done)


async def unlink_account(store: Store, platform: str, platform_user_id: str) -> bool:
    """``/unlink`` sent to the bot: whoever linked this account gets no more alerts."""
    async with store.engine.begin() as conn:
        owners = list(
            (
                await conn.scalars(
                    sa.select(t.alert_links.c.user_id).where(
                        t.alert_links.c.platform == platform,
                        t.alert_links.c.platform_user_id == platform_user_id,
                        t.alert_links.c.unlinked_at.is_(None),
                    )
                )
            ).all()
        )
        for user_id in owners:
            await _forget(
                conn,
                sa.and_(t.alert_links.c.user_id == user_id, t.alert_links.c.platform == platform),
                utcnow(),
            )
            await store._audit(
                conn, user_id, "alerts.unlink", "user", user_id, {"platform": platform}
            )
    return bool(owners)


async def links(store: Store, user_id: int) -> list[AlertLink]:
    """The volunteer's linked accounts (not the unlinked ones)."""
    query = (
        sa.select(t.alert_links)
        .where(t.alert_links.c.user_id == user_id, t.alert_links.c.unlinked_at.is_(None))
        .order_by(t.alert_links.c.platform)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        AlertLink(
            id=r.id,
            user_id=r.user_id,
            platform=r.platform,
            linked_at=r.linked_at,
            reachable=r.unreachable_at is None,
        )
        for r in rows
    ]


async def mark_unreachable(store: Store, link_id: int) -> None:
    """The platform refused a private message to this account: stop trying it until the
    volunteer links it again (their account page says so)."""
    async with store.engine.begin() as conn:
        await conn.execute(
            t.alert_links.update()
            .where(t.alert_links.c.id == link_id, t.alert_links.c.unreachable_at.is_(None))
            .values(unreachable_at=utcnow())
        )


def alert_round(opened_at: datetime, now: datetime, every: timedelta) -> int:
    """0 for the alert when the case opens, 1 after ``every``, and so on."""
    return max(int((now - opened_at) / every), 0) if every > timedelta(0) else 0


class PrivateAlerts:
    """Queues urgent alerts for the on-duty volunteers with a linked account."""

    def __init__(self, store: Store, settings: Settings, prompts: Prompts) -> None:
        self.store = store
        self.settings = settings
        self.prompts = prompts
        # Called when alerts were queued: the outbox worker's wakeup, so they go at once.
        self.wake: Callable[[], None] | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.console.private_alerts

    def text(self, case_id: int, platform: str, minutes: int, language: str | None) -> str:
        base = self.settings.console.public_url.rstrip("/")
        return self.prompts.render(
            "urgent_alert",
            language or self.settings.general.default_language,
            case_id=case_id,
            platform=PLATFORM_NAMES.get(platform, platform),
            minutes=minutes,
            url=f"{base}/cases/{case_id}" if base else "",
        )

    async def alert(self, case_id: int, *, now: datetime | None = None) -> int:
        """Queue this round's alert about ``case_id`` for every on-duty volunteer with a
        linked, reachable account, if the case is open, urgent and unclaimed. Returns
        how many were queued (0 when this round's were queued already)."""
        if not self.enabled:
            return 0
        now = now or utcnow()
        query = (
            sa.select(t.cases.c.created_at, t.channels.c.platform)
            .join(t.channels, t.channels.c.id == t.cases.c.channel_id)
            .where(
                t.cases.c.id == case_id,
                t.cases.c.status == CaseStatus.OPEN.value,
                t.cases.c.urgent.is_(True),
                t.cases.c.claimed_by.is_(None),
            )
        )
        recipients = (
            sa.select(t.alert_links.c.id, t.users.c.id.label("user_id"), t.users.c.language)
            .join(t.users, t.users.c.id == t.alert_links.c.user_id)
            .where(
                t.users.c.on_duty.is_(True),
                t.users.c.active.is_(True),
                t.alert_links.c.unlinked_at.is_(None),
                t.alert_links.c.unreachable_at.is_(None),
            )
        )
        every = timedelta(minutes=self.settings.console.alert_minutes)
        async with self.store.engine.begin() as conn:
            case = (await conn.execute(query)).first()
            if case is None:
                return 0
            round_ = alert_round(case.created_at, now, every)
            if round_ >= MAX_ROUNDS:
                return 0
            minutes = max(int((now - case.created_at).total_seconds() // 60), 0)
            queued = 0
            for r in (await conn.execute(recipients)).all():
                values = {
                    "channel_id": None,
                    "alert_link_id": r.id,
                    "alert_key": f"{case_id}:{r.user_id}:{round_}",
                    "kind": "alert",
                    "text": self.text(case_id, case.platform, minutes, r.language),
                    "visibility": Visibility.PRIVATE.value,
                    "status": OutboxStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                dialect = postgresql if not self.store.is_sqlite else sqlite
                insert = dialect.insert(t.outbox).values(**values).on_conflict_do_nothing()
                result = await conn.execute(insert)
                queued += result.rowcount or 0
        if queued and self.wake is not None:
            self.wake()
        return queued

    async def alert_all(self, case_ids: list[int], *, now: datetime | None = None) -> int:
        """:meth:`alert` for each case (the minute's check of unclaimed urgent cases)."""
        queued = 0
        for case_id in case_ids:
            queued += await self.alert(case_id, now=now)
        return queued

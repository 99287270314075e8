"""What coordinators change about watched channels: pause and resume watching, the
language of the bot's notices, and a shorter retention than the organisation's.

Pausing is the coordinator's switch, apart from the channel admin's opt-in: while a
channel is paused the pipeline reads nothing from it (bot/pipeline.py), not even what
the platform delivers late or a history catch-up fetches after it resumes. Every change
is in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot import schema as t
from bot.models import utcnow
from bot.settings import LANGUAGES, PrivacySettings
from bot.store import NotFound, Store, StoreError

#: The longest retention a channel may set for itself is the organisation's own; this is
#: the bound for the form and the API before that check.
MAX_RETENTION_DAYS = 3650


class ChannelAdminError(StoreError):
    """A change the rules refuse; the message says why, for the coordinator."""


@dataclass(frozen=True)
class ChannelInfo:
    """A channel as the Channels page shows it, consent record included."""

    id: int
    platform: str
    chat_id: str
    title: str
    kind: str
    language: str | None
    opted_in: bool
    consent_by: str | None  # the admin who opted in, pseudonymised
    consent_at: datetime | None
    consent_title: str | None
    opted_out_at: datetime | None
    created_at: datetime
    server_id: str | None
    paused_at: datetime | None
    paused_by: str | None  # the coordinator's username
    watch_from: datetime | None
    retention_unanswered_days: int | None
    retention_answered_days: int | None

    @property
    def status(self) -> str:
        """``watching``, ``paused`` or ``opted out``."""
        if not self.opted_in:
            return "opted out"
        return "paused" if self.paused_at is not None else "watching"

    @classmethod
    def from_row(cls, row: Row[Any]) -> ChannelInfo:
        return cls(
            id=row.id,
            platform=row.platform,
            chat_id=row.chat_id,
            title=row.title,
            kind=row.kind,
            language=row.language,
            opted_in=row.opted_in,
            consent_by=row.consent_by,
            consent_at=row.consent_at,
            consent_title=row.consent_title,
            opted_out_at=row.opted_out_at,
            created_at=row.created_at,
            server_id=row.server_id,
            paused_at=row.paused_at,
            paused_by=row.paused_by_name,
            watch_from=row.watch_from,
            retention_unanswered_days=row.retention_unanswered_days,
            retention_answered_days=row.retention_answered_days,
        )

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "platform": self.platform,
            "title": self.title,
            "kind": self.kind,
            "language": self.language,
            "status": self.status,
            "opted_in_at": iso(self.consent_at),
            "consent": {"by": self.consent_by, "at": iso(self.consent_at)},
            "opted_out_at": iso(self.opted_out_at),
            "paused_at": iso(self.paused_at),
            "paused_by": self.paused_by,
            "retention_unanswered_days": self.retention_unanswered_days,
            "retention_answered_days": self.retention_answered_days,
        }


def _query() -> sa.Select[Any]:
    pauser = t.users.alias("pauser")
    return sa.select(t.channels, pauser.c.username.label("paused_by_name")).outerjoin(
        pauser, pauser.c.id == t.channels.c.paused_by
    )


async def channels(store: Store) -> list[ChannelInfo]:
    """Group channels and servers, watched ones first (direct chats with the bot are
    people, not channels, and are left out)."""
    query = (
        _query()
        .where(t.channels.c.kind != "direct")
        .order_by(
            t.channels.c.opted_in.desc(),
            t.channels.c.platform,
            t.channels.c.title,
            t.channels.c.id,
        )
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [ChannelInfo.from_row(r) for r in rows]


async def channel(store: Store, channel_id: int) -> ChannelInfo:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                _query().where(t.channels.c.id == channel_id, t.channels.c.kind != "direct")
            )
        ).first()
    if row is None:
        raise NotFound(f"no channel {channel_id}")
    return ChannelInfo.from_row(row)


def _members(info: ChannelInfo) -> sa.ColumnElement[bool]:
    """The channel itself and, for a whole server's row, the server's channels."""
    if info.kind == "server" and info.server_id is not None:
        return sa.or_(
            t.channels.c.id == info.id,
            sa.and_(
                t.channels.c.platform == info.platform,
                t.channels.c.server_id == info.server_id,
                t.channels.c.kind != "direct",
            ),
        )
    return t.channels.c.id == info.id


async def set_paused(store: Store, channel_id: int, paused: bool, *, by: int) -> ChannelInfo:
    """Pause or resume watching a channel (a server's row takes its channels with it).

    Resuming starts reading at that moment: what was said while paused stays unread.
    """
    info = await channel(store, channel_id)
    if paused and not info.opted_in:
        raise ChannelAdminError("this channel is not opted in, so it is not being watched")
    now = utcnow()
    async with store.engine.begin() as conn:
        if paused:
            changed = await conn.execute(
                t.channels.update()
                .where(_members(info), t.channels.c.paused_at.is_(None))
                .values(paused_at=now, paused_by=by)
            )
        else:
            changed = await conn.execute(
                t.channels.update()
                .where(_members(info), t.channels.c.paused_at.is_not(None))
                .values(paused_at=None, paused_by=None, watch_from=now)
            )
        await store._audit(
            conn,
            by,
            "channel.pause" if paused else "channel.resume",
            "channel",
            channel_id,
            {"channels": int(changed.rowcount or 0)},
        )
    return await channel(store, channel_id)


def check_retention(days: int | None, setting: int, name: str) -> None:
    if days is None:
        return
    if not 1 <= days <= setting:
        raise ChannelAdminError(
            f"{name}: a channel may keep messages for 1 to {setting} days "
            "(the organisation's setting is the longest)"
        )


async def set_options(
    store: Store,
    channel_id: int,
    *,
    language: str | None,
    retention_unanswered_days: int | None,
    retention_answered_days: int | None,
    privacy: PrivacySettings,
    by: int,
) -> ChannelInfo:
    """Set a channel's language (None: the default) and its own retention (None: the
    settings'). A channel may keep messages for less time than the settings, not more."""
    if language is not None and language not in LANGUAGES:
        raise ChannelAdminError(f"language: one of {', '.join(LANGUAGES)}")
    check_retention(
        retention_unanswered_days,
        privacy.retention_unanswered_days,
        "days kept without an answer",
    )
    check_retention(
        retention_answered_days, privacy.retention_answered_days, "days kept once answered"
    )
    before = await channel(store, channel_id)
    values = {
        "language": language,
        "retention_unanswered_days": retention_unanswered_days,
        "retention_answered_days": retention_answered_days,
    }
    changes = {
        name: {"from": getattr(before, name), "to": value}
        for name, value in values.items()
        if getattr(before, name) != value
    }
    if changes:
        async with store.engine.begin() as conn:
            await conn.execute(
                t.channels.update().where(t.channels.c.id == channel_id).values(**values)
            )
            await store._audit(conn, by, "channel.settings", "channel", channel_id, changes)
    return await channel(store, channel_id)


async def retention_overrides(store: Store) -> dict[int, tuple[int | None, int | None]]:
    """Channels with a retention of their own: {id: (unanswered days, answered days)}."""
    query = sa.select(
        t.channels.c.id,
        t.channels.c.retention_unanswered_days,
        t.channels.c.retention_answered_days,
    ).where(
        sa.or_(
            t.channels.c.retention_unanswered_days.is_not(None),
            t.channels.c.retention_answered_days.is_not(None),
        )
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {r.id: (r.retention_unanswered_days, r.retention_answered_days) for r in rows}

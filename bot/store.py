"""The store: every query peerdesk makes, parameterised, over SQLAlchemy 2 async Core.

SQLite (aiosqlite, WAL) by default; PostgreSQL (asyncpg) for several instances. Methods
that must not be half-done (a reply and its outbox row, a case and its suggestions) run
in one transaction.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot import migrate
from bot import schema as t
from bot.models import (
    Case,
    CaseDetail,
    CaseStatus,
    Channel,
    ChannelRef,
    Detection,
    IncomingMessage,
    OutboxItem,
    OutboxStatus,
    Reason,
    Reply,
    ReplyStatus,
    Role,
    StoredMessage,
    Suggestion,
    User,
    Visibility,
    utcnow,
)
from knowledge_base import Entry
from knowledge_base.embedder import Vectors

EXCERPT_CHARS = 280


class StoreError(Exception):
    """A request the store refuses (unknown object, wrong state)."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """The request clashes with the current state (someone else got there first)."""


@dataclass(frozen=True)
class SuggestionRow:
    entry_id: str
    rank: int
    score: float
    why: tuple[str, ...]


@dataclass(frozen=True)
class FaqRevision:
    revision: int
    status: str
    author: str
    created_at: datetime
    entry: Entry


@dataclass(frozen=True)
class Delivery:
    """An outbox row claimed for delivery, with where it goes."""

    item: OutboxItem
    channel: ChannelRef
    recipient: str | None  # platform user id for private replies
    direct_ok: bool | None = None  # whether the recipient may be written to privately


def _reasons(raw: Any) -> tuple[Reason, ...]:
    return tuple(Reason(**r) for r in raw or [])


def _user_from_row(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        trained=row.trained,
        active=row.active,
    )


def _channel_from_row(row: Row[Any]) -> Channel:
    return Channel(
        id=row.id,
        platform=row.platform,
        chat_id=row.chat_id,
        title=row.title,
        kind=row.kind,
        language=row.language,
        opted_in=row.opted_in,
        consent_by=row.consent_by,
        consent_at=row.consent_at,
        server_id=row.server_id,
    )


def _message_from_row(row: Row[Any]) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        channel_id=row.channel_id,
        platform_message_id=row.platform_message_id,
        author=row.author,
        author_name=row.author_name,
        text=row.text,
        sent_at=row.sent_at,
        reply_to_message_id=row.reply_to_message_id,
        case_id=row.case_id,
        flagged=row.flagged,
        urgent=row.urgent,
        score=row.score,
        reasons=_reasons(row.reasons),
        language=row.language,
        substances=tuple(row.substances or ()),
        detected=row.detected,
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
    )


def _reply_from_row(row: Row[Any]) -> Reply:
    return Reply(
        id=row.id,
        case_id=row.case_id,
        text=row.text,
        visibility=Visibility(row.visibility),
        status=ReplyStatus(row.status),
        written_by=row.written_by,
        approved_by=row.approved_by,
        approved_by_name=row.approved_by_name,
        created_at=row.created_at,
        sent_at=row.sent_at,
        platform_message_id=row.platform_message_id,
        error=row.error,
    )


def _entry_from_row(row: Row[Any]) -> Entry:
    return Entry.from_content(
        id=row.id,
        topic=row.topic,
        status=row.status,
        content=row.content,
        reviewed_by=row.reviewed_by,
        review_by=row.review_by,
    )


def _outbox_from_row(row: Row[Any]) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        reply_id=row.reply_id,
        channel_id=row.channel_id,
        text=row.text,
        visibility=Visibility(row.visibility),
        reply_to_message_id=row.reply_to_message_id,
        attempts=row.attempts,
        status=OutboxStatus(row.status),
        kind=row.kind,
        recipient=row.recipient,
        part_ids=tuple(row.part_ids or ()),
    )


class Store:
    """All persistence. ``__init__`` does no I/O: call :meth:`initialize`, then :meth:`close`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def initialize(self, *, migrate_schema: bool = True) -> None:
        """Connect and, unless told not to, apply pending migrations."""
        if migrate_schema:
            await migrate.upgrade(self.engine)
        else:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    # -- meta --------------------------------------------------------------------------

    async def get_or_create_secret(self, name: str) -> str:
        """A random secret kept in the database, created on first use (first writer wins)."""
        key = f"secret:{name}"
        async with self.engine.begin() as conn:
            value = await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == key))
            if value is not None:
                return str(value)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(t.meta.insert().values(key=key, value=secrets.token_urlsafe(48)))
        except sa.exc.IntegrityError:
            pass  # another instance created it first; read theirs
        async with self.engine.connect() as conn:
            return str(await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == key)))

    async def get_meta(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            value = await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == key))
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        async with self.engine.begin() as conn:
            updated = await conn.execute(
                t.meta.update().where(t.meta.c.key == key).values(value=value)
            )
            if not updated.rowcount:
                await conn.execute(t.meta.insert().values(key=key, value=value))

    # -- users -------------------------------------------------------------------------

    async def set_user_active(self, user_id: int, active: bool) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(active=active)
            )
            action = "user.activate" if active else "user.deactivate"
            await self._audit(conn, None, action, "user", user_id, {})

    async def add_user(
        self, username: str, password_hash: str, role: Role, *, trained: bool = True
    ) -> User:
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    t.users.insert().values(
                        username=username,
                        password_hash=password_hash,
                        role=role.value,
                        trained=trained,
                        active=True,
                        created_at=utcnow(),
                    )
                )
                user_id = result.inserted_primary_key[0]  # type: ignore[index]
                await self._audit(conn, None, "user.add", "user", user_id, {"role": role.value})
        except sa.exc.IntegrityError:
            raise StoreError(f"a user named {username!r} already exists") from None
        return User(id=user_id, username=username, role=role, trained=trained, active=True)

    async def user_credentials(self, username: str) -> tuple[User, str] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.users).where(t.users.c.username == username))
            ).first()
        return (_user_from_row(row), row.password_hash) if row else None

    async def get_user(self, user_id: int) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.users).where(t.users.c.id == user_id))).first()
        return _user_from_row(row) if row else None

    async def add_token(self, user_id: int, token_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                t.api_tokens.insert().values(
                    user_id=user_id, token_hash=token_hash, created_at=utcnow()
                )
            )
            await self._audit(conn, user_id, "token.create", "user", user_id, {})

    async def user_for_token(self, token_hash: str) -> User | None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(t.users)
                    .join(t.api_tokens, t.api_tokens.c.user_id == t.users.c.id)
                    .where(t.api_tokens.c.token_hash == token_hash)
                )
            ).first()
            if row is None:
                return None
            await conn.execute(
                t.api_tokens.update()
                .where(t.api_tokens.c.token_hash == token_hash)
                .values(last_used_at=utcnow())
            )
        return _user_from_row(row)

    # -- channels ----------------------------------------------------------------------

    @staticmethod
    async def _channel_row(conn: AsyncConnection, platform: str, chat_id: str) -> Row[Any] | None:
        query = sa.select(t.channels).where(
            t.channels.c.platform == platform, t.channels.c.chat_id == chat_id
        )
        return (await conn.execute(query)).first()

    async def get_channel(self, platform: str, chat_id: str) -> Channel | None:
        async with self.engine.connect() as conn:
            row = await self._channel_row(conn, platform, chat_id)
        return _channel_from_row(row) if row else None

    async def list_channels(self) -> list[Channel]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.channels).order_by(t.channels.c.id))).all()
        return [_channel_from_row(r) for r in rows]

    async def opt_in(
        self, ref: ChannelRef, *, consent_by: str, at: datetime, notice: str | None
    ) -> tuple[Channel, bool]:
        """Record a channel's consent; queue ``notice`` if it was not opted in already.

        Returns the channel and whether this call opted it in.
        """
        async with self.engine.begin() as conn:
            row = await self._channel_row(conn, ref.platform, ref.chat_id)
            if row is not None and row.opted_in:
                return _channel_from_row(row), False
            values = {
                "title": ref.title,
                "kind": ref.kind,
                "opted_in": True,
                "consent_by": consent_by,
                "consent_at": at,
                "consent_title": ref.title,
                "opted_out_at": None,
            }
            if ref.language:
                values["language"] = ref.language
            if ref.server_id:
                values["server_id"] = ref.server_id
            if row is None:
                result = await conn.execute(
                    t.channels.insert().values(
                        platform=ref.platform, chat_id=ref.chat_id, created_at=at, **values
                    )
                )
                channel_id = result.inserted_primary_key[0]  # type: ignore[index]
            else:
                channel_id = row.id
                await conn.execute(
                    t.channels.update().where(t.channels.c.id == channel_id).values(**values)
                )
            await self._audit(
                conn, None, "channel.opt_in", "channel", channel_id, {"by": consent_by}
            )
            if notice:
                await self._enqueue(conn, channel_id, notice, kind="notice")
            row = (
                await conn.execute(sa.select(t.channels).where(t.channels.c.id == channel_id))
            ).one()
        return _channel_from_row(row), True

    async def opt_out(
        self, ref: ChannelRef, *, by: str, at: datetime, purge: bool, notice: str | None
    ) -> Channel | None:
        """Stop watching a channel; with ``purge`` delete what was stored from it.

        The consent record and the audit trail stay. ``notice`` (the confirmation) is
        queued after the purge. Returns None when the channel was not being watched.
        """
        async with self.engine.begin() as conn:
            row = await self._channel_row(conn, ref.platform, ref.chat_id)
            if row is None or not row.opted_in:
                return None
            await conn.execute(
                t.channels.update()
                .where(t.channels.c.id == row.id)
                .values(opted_in=False, opted_out_at=at)
            )
            purged = await self._purge_channel(conn, row.id) if purge else 0
            await self._audit(
                conn, None, "channel.opt_out", "channel", row.id, {"by": by, "purged": purged}
            )
            if notice:
                await self._enqueue(conn, row.id, notice, kind="notice")
            row = (await conn.execute(sa.select(t.channels).where(t.channels.c.id == row.id))).one()
        return _channel_from_row(row)

    async def _purge_channel(self, conn: AsyncConnection, channel_id: int) -> int:
        """Delete a channel's messages, cases and replies. Returns how many messages."""
        cases = sa.select(t.cases.c.id).where(t.cases.c.channel_id == channel_id)
        await self._delete_cases(conn, cases)
        deleted = await conn.execute(
            t.messages.delete().where(t.messages.c.channel_id == channel_id)
        )
        await conn.execute(
            t.outbox.delete().where(
                t.outbox.c.channel_id == channel_id,
                t.outbox.c.status.in_([OutboxStatus.PENDING.value, OutboxStatus.SENDING.value]),
            )
        )
        await self._drop_orphan_contacts(conn)
        return int(deleted.rowcount or 0)

    async def _delete_cases(self, conn: AsyncConnection, case_ids: sa.Select[Any]) -> int:
        """Delete cases with everything that hangs off them (not their messages)."""
        ids = list((await conn.scalars(case_ids)).all())
        if not ids:
            return 0
        replies = sa.select(t.replies.c.id).where(t.replies.c.case_id.in_(ids))
        await conn.execute(t.outbox.delete().where(t.outbox.c.reply_id.in_(replies)))
        await conn.execute(t.replies.delete().where(t.replies.c.case_id.in_(ids)))
        await conn.execute(t.suggestions.delete().where(t.suggestions.c.case_id.in_(ids)))
        await conn.execute(
            t.messages.update().where(t.messages.c.case_id.in_(ids)).values(case_id=None)
        )
        await conn.execute(t.cases.delete().where(t.cases.c.id.in_(ids)))
        return len(ids)

    async def _drop_orphan_contacts(self, conn: AsyncConnection) -> None:
        """Contacts are kept only for people who have a case."""
        await conn.execute(
            t.contacts.delete().where(
                t.contacts.c.pseudonym.not_in(sa.select(t.cases.c.author).distinct())
            )
        )

    async def server_channels(self, platform: str, server_id: str) -> list[Channel]:
        """The opted-in channels of one server (a Discord guild)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.channels)
                    .where(
                        t.channels.c.platform == platform,
                        t.channels.c.server_id == server_id,
                        t.channels.c.kind != "server",
                        t.channels.c.opted_in.is_(True),
                    )
                    .order_by(t.channels.c.id)
                )
            ).all()
        return [_channel_from_row(r) for r in rows]

    async def move_channel(self, platform: str, old_chat_id: str, new_chat_id: str) -> None:
        """Give a stored channel its new platform id, keeping its consent and history. If a
        row for the new id exists already (messages raced the move), it is left alone."""
        async with self.engine.begin() as conn:
            taken = await conn.scalar(
                sa.select(t.channels.c.id).where(
                    t.channels.c.platform == platform, t.channels.c.chat_id == new_chat_id
                )
            )
            if taken is not None:
                return
            moved = await conn.execute(
                t.channels.update()
                .where(t.channels.c.platform == platform, t.channels.c.chat_id == old_chat_id)
                .values(chat_id=new_chat_id)
            )
            if moved.rowcount:
                await self._audit(
                    conn,
                    None,
                    "channel.move",
                    "channel",
                    None,
                    {"from": old_chat_id, "to": new_chat_id},
                )

    async def watched_channels(self, platform: str) -> list[tuple[Channel, str | None]]:
        """Opted-in channels of a platform, each with the platform id of the newest
        message stored from it (None when nothing was): where a history catch-up starts."""
        newest = (
            sa.select(t.messages.c.channel_id, sa.func.max(t.messages.c.id).label("message_id"))
            .group_by(t.messages.c.channel_id)
            .subquery()
        )
        last = t.messages.alias("last")
        query = (
            sa.select(t.channels, last.c.platform_message_id.label("last_message_id"))
            .outerjoin(newest, newest.c.channel_id == t.channels.c.id)
            .outerjoin(last, last.c.id == newest.c.message_id)
            .where(
                t.channels.c.platform == platform,
                t.channels.c.opted_in.is_(True),
                t.channels.c.kind != "server",
            )
            .order_by(t.channels.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(_channel_from_row(r), r.last_message_id) for r in rows]

    # -- contacts ----------------------------------------------------------------------

    async def remember_contact(
        self, pseudonym: str, platform: str, user_id: str, *, direct_ok: bool | None = None
    ) -> None:
        """Keep the platform address of a person with a case; ``direct_ok`` (when given)
        records whether the bot may write to them privately."""
        values: dict[str, Any] = {"platform_user_id": user_id, "updated_at": utcnow()}
        if direct_ok is not None:
            values["direct_ok"] = direct_ok
        async with self.engine.begin() as conn:
            updated = await conn.execute(
                t.contacts.update().where(t.contacts.c.pseudonym == pseudonym).values(**values)
            )
            if not updated.rowcount:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            t.contacts.insert().values(
                                pseudonym=pseudonym, platform=platform, **values
                            )
                        )
                except sa.exc.IntegrityError:
                    pass  # a concurrent insert of the same person

    async def set_direct_ok(self, pseudonym: str, ok: bool) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                t.contacts.update().where(t.contacts.c.pseudonym == pseudonym).values(direct_ok=ok)
            )

    async def direct_ok(self, pseudonym: str) -> bool | None:
        """Whether this person may be written to privately; None when nobody knows yet."""
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                sa.select(t.contacts.c.direct_ok).where(t.contacts.c.pseudonym == pseudonym)
            )
        return None if value is None else bool(value)

    async def has_contact(self, pseudonym: str) -> bool:
        """Whether a platform address is kept for this person (needed to write privately)."""
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(t.contacts.c.pseudonym).where(t.contacts.c.pseudonym == pseudonym)
            )
        return found is not None

    # -- messages ----------------------------------------------------------------------

    async def insert_message(
        self, channel_id: int, msg: IncomingMessage, author: str
    ) -> tuple[int, bool]:
        """Store a message before anything else happens to it.

        Returns (message id, created); a message already stored (same channel and
        platform message id) is not stored again and comes back with created=False.
        """
        values = {
            "channel_id": channel_id,
            "platform_message_id": msg.message_id,
            "author": author,
            "author_name": msg.author_name,
            "text": msg.text,
            "sent_at": msg.sent_at,
            "received_at": utcnow(),
            "reply_to_message_id": msg.reply_to_message_id,
            "detected": False,
            "flagged": False,
            "urgent": False,
            "score": 0.0,
            "reasons": [],
            "substances": [],
        }
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(t.messages.insert().values(**values))
                return result.inserted_primary_key[0], True  # type: ignore[index]
        except sa.exc.IntegrityError:
            async with self.engine.connect() as conn:
                existing = await conn.scalar(
                    sa.select(t.messages.c.id).where(
                        t.messages.c.channel_id == channel_id,
                        t.messages.c.platform_message_id == msg.message_id,
                    )
                )
            if existing is None:
                raise
            return int(existing), False

    async def get_message(self, message_id: int) -> StoredMessage:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.messages).where(t.messages.c.id == message_id))
            ).first()
        if row is None:
            raise NotFound(f"no message {message_id}")
        return _message_from_row(row)

    async def undetected_messages(self, limit: int = 500) -> list[tuple[StoredMessage, Channel]]:
        """Messages stored but never run through detection (a crash in between)."""
        query = (
            sa.select(t.messages)
            .where(t.messages.c.detected.is_(False))
            .order_by(t.messages.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            ids = {row.channel_id for row in rows}
            channel_rows = (
                (await conn.execute(sa.select(t.channels).where(t.channels.c.id.in_(ids)))).all()
                if ids
                else []
            )
        channels = {r.id: _channel_from_row(r) for r in channel_rows}
        return [(_message_from_row(row), channels[row.channel_id]) for row in rows]

    async def record_detection(self, message_id: int, detection: Detection) -> None:
        async with self.engine.begin() as conn:
            await self._set_detection(conn, message_id, detection, case_id=None)

    async def _set_detection(
        self,
        conn: AsyncConnection,
        message_id: int,
        detection: Detection,
        case_id: int | None,
    ) -> None:
        await conn.execute(
            t.messages.update()
            .where(t.messages.c.id == message_id)
            .values(
                detected=True,
                flagged=detection.flagged,
                urgent=detection.urgent,
                score=detection.score,
                reasons=[r.as_dict() for r in detection.reasons],
                language=detection.language,
                substances=list(detection.substances),
                case_id=case_id,
            )
        )

    async def edit_message(
        self, channel_id: int, platform_message_id: str, text: str, *, at: datetime
    ) -> StoredMessage | None:
        """Replace a stored message's text after its author edited it; it is detected
        again. None when the message was never stored, or was deleted."""
        async with self.engine.begin() as conn:
            updated = await conn.execute(
                t.messages.update()
                .where(
                    t.messages.c.channel_id == channel_id,
                    t.messages.c.platform_message_id == platform_message_id,
                    t.messages.c.deleted_at.is_(None),
                )
                .values(text=text, edited_at=at, detected=False)
            )
            if not updated.rowcount:
                return None
            row = (
                await conn.execute(
                    sa.select(t.messages).where(
                        t.messages.c.channel_id == channel_id,
                        t.messages.c.platform_message_id == platform_message_id,
                    )
                )
            ).one()
        return _message_from_row(row)

    async def delete_message(
        self, channel_id: int, platform_message_id: str, *, at: datetime
    ) -> StoredMessage | None:
        """Remove a message's text after it was deleted on the platform; the row stays so
        the thread still reads in order. An open case left with no text is dismissed."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(t.messages).where(
                        t.messages.c.channel_id == channel_id,
                        t.messages.c.platform_message_id == platform_message_id,
                    )
                )
            ).first()
            if row is None or row.deleted_at is not None:
                return None
            await conn.execute(
                t.messages.update()
                .where(t.messages.c.id == row.id)
                .values(
                    text="",
                    author_name="",
                    deleted_at=at,
                    reasons=[],
                    substances=[],
                    flagged=False,
                )
            )
            if row.case_id is not None:
                remaining = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(t.messages)
                    .where(t.messages.c.case_id == row.case_id, t.messages.c.deleted_at.is_(None))
                )
                if not remaining:
                    await conn.execute(
                        t.cases.update()
                        .where(
                            t.cases.c.id == row.case_id, t.cases.c.status == CaseStatus.OPEN.value
                        )
                        .values(status=CaseStatus.DISMISSED.value, updated_at=at)
                    )
            row = (await conn.execute(sa.select(t.messages).where(t.messages.c.id == row.id))).one()
        return _message_from_row(row)

    async def conversation_case(self, channel_id: int, *, active_since: datetime) -> int | None:
        """In a direct chat with the bot: the case a new message continues, if any.

        The newest case still open, or answered and active since ``active_since`` (a
        follow-up to an answer reopens it); a dismissed case is never continued.
        """
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(t.cases.c.id, t.cases.c.status, t.cases.c.updated_at)
                    .where(
                        t.cases.c.channel_id == channel_id,
                        t.cases.c.status != CaseStatus.DISMISSED.value,
                    )
                    .order_by(t.cases.c.id.desc())
                    .limit(1)
                )
            ).first()
        if row is None:
            return None
        if row.status == CaseStatus.OPEN.value or row.updated_at >= active_since:
            return int(row.id)
        return None

    # -- cases -------------------------------------------------------------------------

    async def find_thread_case(
        self,
        channel_id: int,
        author: str,
        *,
        reply_to_message_id: str | None,
        active_since: datetime,
    ) -> int | None:
        """The open case a new message belongs to, if any.

        A reply to a message that is part of an open case joins that case; otherwise the
        author's own open case in this channel joins if it was active recently.
        """
        async with self.engine.connect() as conn:
            if reply_to_message_id is not None:
                case_id = await conn.scalar(
                    sa.select(t.cases.c.id)
                    .join(t.messages, t.messages.c.case_id == t.cases.c.id)
                    .where(
                        t.messages.c.channel_id == channel_id,
                        t.messages.c.platform_message_id == reply_to_message_id,
                        t.cases.c.status == CaseStatus.OPEN.value,
                    )
                )
                if case_id is not None:
                    return int(case_id)
            case_id = await conn.scalar(
                sa.select(t.cases.c.id)
                .where(
                    t.cases.c.channel_id == channel_id,
                    t.cases.c.author == author,
                    t.cases.c.status == CaseStatus.OPEN.value,
                    t.cases.c.updated_at >= active_since,
                )
                .order_by(t.cases.c.updated_at.desc())
                .limit(1)
            )
        return int(case_id) if case_id is not None else None

    async def file_message(
        self,
        message_id: int,
        detection: Detection,
        *,
        case_id: int | None,
        suggestions: Sequence[SuggestionRow] | None,
        notice: str | None = None,
        reopen: bool = False,
    ) -> int:
        """Attach a detected message to ``case_id`` (or to a new case) in one transaction.

        ``suggestions`` (when given) replace the case's suggestions. ``notice`` is queued
        to the channel when a new case is opened (the acknowledgement of a direct
        question); ``reopen`` puts an answered case back in the queue. Returns the case id.
        """
        now = utcnow()
        async with self.engine.begin() as conn:
            msg = (
                await conn.execute(sa.select(t.messages).where(t.messages.c.id == message_id))
            ).one()
            if case_id is None:
                result = await conn.execute(
                    t.cases.insert().values(
                        channel_id=msg.channel_id,
                        author=msg.author,
                        status=CaseStatus.OPEN.value,
                        urgent=detection.urgent,
                        score=detection.score,
                        language=detection.language,
                        first_message_id=message_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                case_id = result.inserted_primary_key[0]  # type: ignore[index]
                if notice:
                    await self._enqueue(conn, msg.channel_id, notice, kind="notice")
            else:
                case = (await conn.execute(sa.select(t.cases).where(t.cases.c.id == case_id))).one()
                values: dict[str, Any] = {
                    "urgent": case.urgent or detection.urgent,
                    "score": max(case.score, detection.score),
                    "updated_at": now,
                }
                if reopen and case.status == CaseStatus.ANSWERED.value:
                    values["status"] = CaseStatus.OPEN.value
                await conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(**values))
            await self._set_detection(conn, message_id, detection, case_id=case_id)
            if suggestions is not None:
                await conn.execute(t.suggestions.delete().where(t.suggestions.c.case_id == case_id))
                if suggestions:
                    await conn.execute(
                        t.suggestions.insert(),
                        [
                            {
                                "case_id": case_id,
                                "entry_id": s.entry_id,
                                "rank": s.rank,
                                "score": s.score,
                                "why": list(s.why),
                                "created_at": now,
                            }
                            for s in suggestions
                        ],
                    )
        assert case_id is not None
        return int(case_id)

    def _case_query(self) -> sa.Select[Any]:
        first = t.messages.alias("first")
        claimer = t.users.alias("claimer")
        return (
            sa.select(
                t.cases,
                t.channels.c.title.label("channel_title"),
                t.channels.c.platform,
                t.channels.c.kind.label("channel_kind"),
                first.c.text.label("first_text"),
                claimer.c.username.label("claimed_by_name"),
            )
            .join(t.channels, t.channels.c.id == t.cases.c.channel_id)
            .outerjoin(first, first.c.id == t.cases.c.first_message_id)
            .outerjoin(claimer, claimer.c.id == t.cases.c.claimed_by)
        )

    async def _cases_from_rows(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Case]:
        ids = [r.id for r in rows]
        flagged: dict[int, list[Any]] = {}
        if ids:
            msg_rows = (
                await conn.execute(
                    sa.select(t.messages.c.case_id, t.messages.c.reasons, t.messages.c.substances)
                    .where(t.messages.c.case_id.in_(ids), t.messages.c.flagged.is_(True))
                    .order_by(t.messages.c.id)
                )
            ).all()
            for m in msg_rows:
                flagged.setdefault(m.case_id, []).append(m)
        cases = []
        for r in rows:
            reasons: dict[tuple[str, str], Reason] = {}
            substances: dict[str, None] = {}
            for m in flagged.get(r.id, []):
                for reason in _reasons(m.reasons):
                    reasons.setdefault((reason.kind, reason.term), reason)
                substances.update(dict.fromkeys(m.substances or ()))
            text = r.first_text or ""
            cases.append(
                Case(
                    id=r.id,
                    channel_id=r.channel_id,
                    channel_title=r.channel_title,
                    platform=r.platform,
                    author=r.author,
                    status=CaseStatus(r.status),
                    urgent=r.urgent,
                    score=r.score,
                    language=r.language,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                    claimed_by=r.claimed_by,
                    claimed_by_name=r.claimed_by_name,
                    first_message_id=r.first_message_id,
                    excerpt=text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…",
                    reasons=tuple(reasons.values()),
                    substances=tuple(substances),
                    channel_kind=r.channel_kind,
                )
            )
        return cases

    async def case_flagged_texts(self, case_id: int) -> list[str]:
        """The texts of a case's flagged messages, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.scalars(
                sa.select(t.messages.c.text)
                .where(t.messages.c.case_id == case_id, t.messages.c.flagged.is_(True))
                .order_by(t.messages.c.id)
            )
            return list(rows.all())

    async def list_cases(
        self, *, statuses: Iterable[CaseStatus] = (CaseStatus.OPEN,), limit: int = 200
    ) -> list[Case]:
        """Cases in the given statuses, urgent first, then oldest first."""
        query = (
            self._case_query()
            .where(t.cases.c.status.in_([s.value for s in statuses]))
            .order_by(t.cases.c.urgent.desc(), t.cases.c.created_at, t.cases.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            return await self._cases_from_rows(conn, rows)

    async def get_case(self, case_id: int, *, context_messages: int = 5) -> CaseDetail:
        """A case with its messages, the messages just before them, suggestions, replies."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(self._case_query().where(t.cases.c.id == case_id))).first()
            if row is None:
                raise NotFound(f"no case {case_id}")
            (case,) = await self._cases_from_rows(conn, [row])
            own = (
                await conn.execute(
                    sa.select(t.messages)
                    .where(t.messages.c.case_id == case_id)
                    .order_by(t.messages.c.sent_at, t.messages.c.id)
                )
            ).all()
            context: Sequence[Row[Any]] = []
            if own and context_messages:
                context = (
                    await conn.execute(
                        sa.select(t.messages)
                        .where(
                            t.messages.c.channel_id == case.channel_id,
                            t.messages.c.id < own[0].id,
                        )
                        .order_by(t.messages.c.id.desc())
                        .limit(context_messages)
                    )
                ).all()
            sugg = (
                await conn.execute(
                    sa.select(t.suggestions, t.faq_entries)
                    .join(t.faq_entries, t.faq_entries.c.id == t.suggestions.c.entry_id)
                    .where(t.suggestions.c.case_id == case_id)
                    .order_by(t.suggestions.c.rank)
                )
            ).all()
            approver = t.users.alias("approver")
            reply_rows = (
                await conn.execute(
                    sa.select(t.replies, approver.c.username.label("approved_by_name"))
                    .join(approver, approver.c.id == t.replies.c.approved_by)
                    .where(t.replies.c.case_id == case_id)
                    .order_by(t.replies.c.id)
                )
            ).all()
        messages = sorted(
            [_message_from_row(r) for r in (*context, *own)], key=lambda m: (m.sent_at, m.id)
        )
        suggestions = []
        for s in sugg:
            entry = Entry.from_content(
                id=s.entry_id, topic=s.topic, status=s.status, content=s.content
            )
            lang, answer = entry.answer(case.language)
            suggestions.append(
                Suggestion(
                    entry_id=s.entry_id,
                    topic=s.topic,
                    rank=s.rank,
                    score=s.score,
                    why=tuple(s.why),
                    status=s.status,
                    question=entry.question(lang),
                    answer=answer,
                    language=lang,
                )
            )
        return CaseDetail(
            case=case,
            messages=tuple(messages),
            suggestions=tuple(suggestions),
            replies=tuple(_reply_from_row(r) for r in reply_rows),
        )

    # -- replies and the outbox --------------------------------------------------------

    async def approve_reply(
        self,
        case_id: int,
        *,
        text: str,
        visibility: Visibility,
        written_by: int,
        approved_by: int,
        entry_id: str | None = None,
        request_key: str | None = None,
    ) -> Reply:
        """Record an approved reply and its outbox row in one transaction.

        The case is claimed by the approver if nobody had it, and leaves the open queue. A
        case claimed by someone else, or dismissed, raises :class:`Conflict` (checked and
        claimed in one statement, so two volunteers cannot both answer). A repeated
        ``request_key`` (a double click, a retried API call) returns the reply it made
        the first time instead of sending a second one.
        """
        if request_key is not None:
            existing = await self._reply_by_key(request_key)
            if existing is not None:
                return existing
        now = utcnow()
        try:
            async with self.engine.begin() as conn:
                claimed = await conn.execute(
                    t.cases.update()
                    .where(
                        t.cases.c.id == case_id,
                        t.cases.c.status != CaseStatus.DISMISSED.value,
                        sa.or_(t.cases.c.claimed_by.is_(None), t.cases.c.claimed_by == approved_by),
                    )
                    .values(
                        status=CaseStatus.ANSWERED.value,
                        claimed_by=approved_by,
                        claimed_at=sa.func.coalesce(t.cases.c.claimed_at, now),
                        updated_at=now,
                    )
                )
                case = (
                    await conn.execute(sa.select(t.cases).where(t.cases.c.id == case_id))
                ).first()
                if case is None:
                    raise NotFound(f"no case {case_id}")
                if not claimed.rowcount:
                    if case.status == CaseStatus.DISMISSED.value:
                        raise Conflict("this case was dismissed")
                    holder = await conn.scalar(
                        sa.select(t.users.c.username).where(t.users.c.id == case.claimed_by)
                    )
                    raise Conflict(f"this case is claimed by {holder}")
                first = (
                    await conn.execute(
                        sa.select(t.messages).where(t.messages.c.id == case.first_message_id)
                    )
                ).one()
                result = await conn.execute(
                    t.replies.insert().values(
                        case_id=case_id,
                        text=text,
                        visibility=visibility.value,
                        status=ReplyStatus.QUEUED.value,
                        written_by=written_by,
                        approved_by=approved_by,
                        entry_id=entry_id,
                        request_key=request_key,
                        created_at=now,
                        approved_at=now,
                    )
                )
                reply_id = result.inserted_primary_key[0]  # type: ignore[index]
                await self._enqueue(
                    conn,
                    case.channel_id,
                    text,
                    kind="reply",
                    reply_id=reply_id,
                    visibility=visibility,
                    reply_to_message_id=first.platform_message_id,
                    recipient=case.author if visibility is Visibility.PRIVATE else None,
                )
                await self._audit(
                    conn,
                    approved_by,
                    "reply.approve",
                    "reply",
                    reply_id,
                    {"case": case_id, "visibility": visibility.value, "written_by": written_by},
                )
        except sa.exc.IntegrityError:
            # The same request_key committed by a concurrent call: that reply stands.
            if request_key is not None:
                existing = await self._reply_by_key(request_key)
                if existing is not None:
                    return existing
            raise
        found = await self._reply_by_id(reply_id)
        assert found is not None
        return found

    def _reply_query(self) -> sa.Select[Any]:
        return sa.select(t.replies, t.users.c.username.label("approved_by_name")).join(
            t.users, t.users.c.id == t.replies.c.approved_by
        )

    async def _reply_by_key(self, request_key: str) -> Reply | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    self._reply_query().where(t.replies.c.request_key == request_key)
                )
            ).first()
        return _reply_from_row(row) if row else None

    async def _reply_by_id(self, reply_id: int) -> Reply | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(self._reply_query().where(t.replies.c.id == reply_id))
            ).first()
        return _reply_from_row(row) if row else None

    async def _enqueue(
        self,
        conn: AsyncConnection,
        channel_id: int,
        text: str,
        *,
        kind: str,
        reply_id: int | None = None,
        visibility: Visibility = Visibility.PUBLIC,
        reply_to_message_id: str | None = None,
        recipient: str | None = None,
    ) -> None:
        now = utcnow()
        await conn.execute(
            t.outbox.insert().values(
                reply_id=reply_id,
                channel_id=channel_id,
                kind=kind,
                text=text,
                visibility=visibility.value,
                reply_to_message_id=reply_to_message_id,
                recipient=recipient,
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )

    async def claim_deliveries(
        self, *, now: datetime, lease: timedelta, limit: int = 10
    ) -> list[Delivery]:
        """Take due outbox rows for delivery, leasing them so no other worker takes them.

        A row whose lease ran out (its worker crashed mid-delivery) is due again.
        """
        due = sa.or_(
            sa.and_(
                t.outbox.c.status == OutboxStatus.PENDING.value,
                t.outbox.c.next_attempt_at <= now,
            ),
            sa.and_(
                t.outbox.c.status == OutboxStatus.SENDING.value,
                t.outbox.c.lease_until < now,
            ),
        )
        pick = sa.select(t.outbox.c.id).where(due).order_by(t.outbox.c.id).limit(limit)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            ids = list((await conn.scalars(pick)).all())
            if not ids:
                return []
            await conn.execute(
                t.outbox.update()
                .where(t.outbox.c.id.in_(ids), due)
                .values(
                    status=OutboxStatus.SENDING.value,
                    lease_until=now + lease,
                    attempts=t.outbox.c.attempts + 1,
                )
            )
            rows = (
                await conn.execute(
                    sa.select(
                        t.outbox,
                        t.channels.c.platform,
                        t.channels.c.chat_id,
                        t.channels.c.title,
                        t.channels.c.kind.label("channel_kind"),
                        t.channels.c.language.label("channel_language"),
                        t.contacts.c.platform_user_id,
                        t.contacts.c.direct_ok,
                        t.channels.c.server_id,
                    )
                    .join(t.channels, t.channels.c.id == t.outbox.c.channel_id)
                    .outerjoin(t.contacts, t.contacts.c.pseudonym == t.outbox.c.recipient)
                    .where(t.outbox.c.id.in_(ids))
                    .order_by(t.outbox.c.id)
                )
            ).all()
        return [
            Delivery(
                item=_outbox_from_row(r),
                channel=ChannelRef(
                    platform=r.platform,
                    chat_id=r.chat_id,
                    title=r.title,
                    kind=r.channel_kind,
                    language=r.channel_language,
                    server_id=r.server_id,
                ),
                recipient=r.platform_user_id,
                direct_ok=r.direct_ok,
            )
            for r in rows
        ]

    async def mark_sent(self, outbox_id: int, *, platform_message_id: str, at: datetime) -> None:
        async with self.engine.begin() as conn:
            reply_id = await conn.scalar(
                sa.select(t.outbox.c.reply_id).where(t.outbox.c.id == outbox_id)
            )
            await conn.execute(
                t.outbox.update()
                .where(t.outbox.c.id == outbox_id)
                .values(
                    status=OutboxStatus.SENT.value,
                    platform_message_id=platform_message_id,
                    sent_at=at,
                    lease_until=None,
                    last_error=None,
                )
            )
            if reply_id is not None:
                await conn.execute(
                    t.replies.update()
                    .where(t.replies.c.id == reply_id)
                    .values(
                        status=ReplyStatus.SENT.value,
                        sent_at=at,
                        platform_message_id=platform_message_id,
                        error=None,
                    )
                )

    async def mark_retry(self, outbox_id: int, *, error: str, next_attempt_at: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                t.outbox.update()
                .where(t.outbox.c.id == outbox_id)
                .values(
                    status=OutboxStatus.PENDING.value,
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    last_error=error,
                )
            )

    async def record_part(self, outbox_id: int, part_ids: Sequence[str]) -> None:
        """Remember the parts of a split text already delivered (see ``part_ids``)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                t.outbox.update().where(t.outbox.c.id == outbox_id).values(part_ids=list(part_ids))
            )

    async def mark_failed(self, outbox_id: int, *, error: str) -> None:
        async with self.engine.begin() as conn:
            reply_id = await conn.scalar(
                sa.select(t.outbox.c.reply_id).where(t.outbox.c.id == outbox_id)
            )
            await conn.execute(
                t.outbox.update()
                .where(t.outbox.c.id == outbox_id)
                .values(status=OutboxStatus.FAILED.value, lease_until=None, last_error=error)
            )
            if reply_id is not None:
                await conn.execute(
                    t.replies.update()
                    .where(t.replies.c.id == reply_id)
                    .values(status=ReplyStatus.FAILED.value, error=error)
                )
            await self._audit(conn, None, "outbox.failed", "outbox", outbox_id, {"error": error})

    async def outbox_items(self) -> list[OutboxItem]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.outbox).order_by(t.outbox.c.id))).all()
        return [_outbox_from_row(r) for r in rows]

    # -- one person's data (privacy requests) -------------------------------------------

    async def person_data(self, pseudonym: str) -> dict[str, Any]:
        """Everything stored about one person, for ``/privacy export``."""
        async with self.engine.connect() as conn:
            messages = (
                await conn.execute(
                    sa.select(t.messages.c.text, t.messages.c.sent_at, t.channels.c.title)
                    .join(t.channels, t.channels.c.id == t.messages.c.channel_id)
                    .where(t.messages.c.author == pseudonym, t.messages.c.deleted_at.is_(None))
                    .order_by(t.messages.c.sent_at, t.messages.c.id)
                )
            ).all()
            cases = (
                await conn.execute(
                    sa.select(t.cases.c.id, t.cases.c.status, t.cases.c.created_at)
                    .where(t.cases.c.author == pseudonym)
                    .order_by(t.cases.c.id)
                )
            ).all()
            replies = (
                await conn.execute(
                    sa.select(t.replies.c.text, t.replies.c.sent_at, t.replies.c.status)
                    .join(t.cases, t.cases.c.id == t.replies.c.case_id)
                    .where(t.cases.c.author == pseudonym)
                    .order_by(t.replies.c.id)
                )
            ).all()
            contact = (
                await conn.execute(
                    sa.select(t.contacts.c.platform, t.contacts.c.updated_at).where(
                        t.contacts.c.pseudonym == pseudonym
                    )
                )
            ).first()
        return {
            "pseudonym": pseudonym,
            "messages": [
                {"channel": m.title, "sent_at": m.sent_at.isoformat(), "text": m.text}
                for m in messages
            ],
            "cases": [
                {"id": c.id, "status": c.status, "opened_at": c.created_at.isoformat()}
                for c in cases
            ],
            "replies": [
                {
                    "text": r.text,
                    "status": r.status,
                    "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                }
                for r in replies
            ],
            "contact_kept": contact is not None,
        }

    async def erase_person(self, pseudonym: str) -> dict[str, int]:
        """Delete everything about one person: their messages, their cases with the
        replies to them, their contact and their direct chat with the bot. A group's
        consent record they made stays, without their pseudonym. Returns counts."""
        async with self.engine.begin() as conn:
            cases = await self._delete_cases(
                conn, sa.select(t.cases.c.id).where(t.cases.c.author == pseudonym)
            )
            messages = await conn.execute(
                t.messages.delete().where(t.messages.c.author == pseudonym)
            )
            direct = sa.select(t.channels.c.id).where(
                t.channels.c.kind == "direct", t.channels.c.consent_by == pseudonym
            )
            direct_ids = list((await conn.scalars(direct)).all())
            if direct_ids:
                await self._delete_cases(
                    conn, sa.select(t.cases.c.id).where(t.cases.c.channel_id.in_(direct_ids))
                )
                await conn.execute(
                    t.messages.delete().where(t.messages.c.channel_id.in_(direct_ids))
                )
                await conn.execute(t.outbox.delete().where(t.outbox.c.channel_id.in_(direct_ids)))
                await conn.execute(t.channels.delete().where(t.channels.c.id.in_(direct_ids)))
            await conn.execute(
                t.outbox.delete().where(
                    t.outbox.c.recipient == pseudonym,
                    t.outbox.c.status != OutboxStatus.SENT.value,
                )
            )
            await conn.execute(
                t.outbox.update().where(t.outbox.c.recipient == pseudonym).values(recipient=None)
            )
            await conn.execute(t.contacts.delete().where(t.contacts.c.pseudonym == pseudonym))
            await conn.execute(
                t.channels.update()
                .where(t.channels.c.consent_by == pseudonym)
                .values(consent_by="erased")
            )
            # The audit trail keeps what was done (an opt-in, an opt-out), not by whom.
            events = await conn.execute(
                sa.select(t.audit_events.c.id, t.audit_events.c.details).where(
                    t.audit_events.c.details["by"].as_string() == pseudonym
                )
            )
            for event in events.all():
                await conn.execute(
                    t.audit_events.update()
                    .where(t.audit_events.c.id == event.id)
                    .values(details={**event.details, "by": "erased"})
                )
            counts = {
                "messages": int(messages.rowcount or 0),
                "cases": cases,
                "direct_chats": len(direct_ids),
            }
            await self._audit(conn, None, "person.erase", "person", None, counts)
        return counts

    # -- FAQ ---------------------------------------------------------------------------

    async def faq_count(self) -> int:
        async with self.engine.connect() as conn:
            return int(
                await conn.scalar(sa.select(sa.func.count()).select_from(t.faq_entries)) or 0
            )

    async def save_faq_entry(
        self, entry: Entry, *, author: str, expected_revision: int | None = None
    ) -> int:
        """Insert or update an entry; a change of content or status makes a new revision.

        With ``expected_revision`` the save happens only if the entry is still at that
        revision (checked in the same statement), else :class:`Conflict`: nobody
        overwrites a colleague's edit unseen. Returns the revision after the call.
        """
        now = utcnow()
        content = entry.content()
        try:
            async with self.engine.begin() as conn:
                row = (
                    await conn.execute(
                        sa.select(t.faq_entries).where(t.faq_entries.c.id == entry.id)
                    )
                ).first()
                current = None if row is None else int(row.revision)
                if expected_revision is not None and current != expected_revision:
                    raise Conflict(f"{entry.id} is at revision {current}, not {expected_revision}")
                if (
                    row is not None
                    and row.content == content
                    and row.status == entry.status
                    and row.reviewed_by == entry.reviewed_by
                    and row.review_by == entry.review_by
                ):
                    return int(row.revision)
                revision = 1 if current is None else current + 1
                values = {
                    "topic": entry.topic,
                    "status": entry.status,
                    "reviewed_by": entry.reviewed_by,
                    "review_by": entry.review_by,
                    "revision": revision,
                    "content": content,
                    "updated_at": now,
                }
                if row is None:
                    await conn.execute(
                        t.faq_entries.insert().values(id=entry.id, created_at=now, **values)
                    )
                else:
                    updated = await conn.execute(
                        t.faq_entries.update()
                        .where(t.faq_entries.c.id == entry.id, t.faq_entries.c.revision == current)
                        .values(**values)
                    )
                    if not updated.rowcount:
                        raise Conflict(f"{entry.id} was saved by someone else meanwhile")
                await conn.execute(
                    t.faq_revisions.insert().values(
                        entry_id=entry.id,
                        revision=revision,
                        status=entry.status,
                        content=content,
                        author=author,
                        created_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            # Two saves of the same revision at once: the other one won.
            raise Conflict(f"{entry.id} was saved by someone else meanwhile") from None
        return revision

    async def faq_entries(self, statuses: Iterable[str] | None = None) -> list[Entry]:
        query = sa.select(t.faq_entries).order_by(t.faq_entries.c.id)
        if statuses is not None:
            query = query.where(t.faq_entries.c.status.in_(list(statuses)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_entry_from_row(r) for r in rows]

    async def faq_entry(self, entry_id: str) -> tuple[Entry, int]:
        """One entry as it is now, with its revision number."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.faq_entries).where(t.faq_entries.c.id == entry_id))
            ).first()
        if row is None:
            raise NotFound(f"no FAQ entry {entry_id!r}")
        return _entry_from_row(row), int(row.revision)

    async def faq_history(self, entry_id: str) -> list[FaqRevision]:
        """Every saved revision of an entry, newest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.faq_revisions, t.faq_entries.c.topic)
                    .join(t.faq_entries, t.faq_entries.c.id == t.faq_revisions.c.entry_id)
                    .where(t.faq_revisions.c.entry_id == entry_id)
                    .order_by(t.faq_revisions.c.revision.desc())
                )
            ).all()
        if not rows:
            raise NotFound(f"no FAQ entry {entry_id!r}")
        return [
            FaqRevision(
                revision=r.revision,
                status=r.status,
                author=r.author,
                created_at=r.created_at,
                entry=Entry.from_content(
                    id=r.entry_id, topic=r.topic, status=r.status, content=r.content
                ),
            )
            for r in rows
        ]

    async def expire_faq_entries(self, today: date) -> list[str]:
        """Entries past their review-by date leave the suggestions: status expired."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.faq_entries).where(
                        t.faq_entries.c.status == "published",
                        t.faq_entries.c.review_by < today,
                    )
                )
            ).all()
        expired = []
        for row in rows:
            entry = dataclasses.replace(_entry_from_row(row), status="expired")
            await self.save_faq_entry(entry, author="review date passed")
            expired.append(entry.id)
        return expired

    async def faq_revisions(self) -> dict[str, int]:
        """Each entry's current revision number."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.faq_entries.c.id, t.faq_entries.c.revision))
            return {r.id: r.revision for r in rows}

    async def faq_vectors(self, model: str) -> dict[str, tuple[int, Vectors]]:
        """Cached embeddings for one model: entry id -> (revision, one row per variant)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.faq_vectors).where(t.faq_vectors.c.model == model)
            )
            return {
                r.entry_id: (
                    r.revision,
                    np.frombuffer(r.vectors, dtype=np.float32).reshape(r.rows, r.dimension),
                )
                for r in rows
            }

    async def clear_faq_vectors(self, model: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.faq_vectors.delete().where(t.faq_vectors.c.model == model))

    async def save_faq_vectors(
        self, entry_id: str, *, model: str, revision: int, vectors: Vectors
    ) -> None:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        rows, dimension = matrix.shape if matrix.size else (0, 0)
        async with self.engine.begin() as conn:
            await conn.execute(
                t.faq_vectors.delete().where(
                    t.faq_vectors.c.entry_id == entry_id, t.faq_vectors.c.model == model
                )
            )
            await conn.execute(
                t.faq_vectors.insert().values(
                    entry_id=entry_id,
                    model=model,
                    revision=revision,
                    rows=rows,
                    dimension=dimension,
                    vectors=matrix.tobytes(),
                    created_at=utcnow(),
                )
            )

    async def faq_revision_count(self, entry_id: str) -> int:
        async with self.engine.connect() as conn:
            return int(
                await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(t.faq_revisions)
                    .where(t.faq_revisions.c.entry_id == entry_id)
                )
                or 0
            )

    # -- audit -------------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: int | None,
        action: str,
        object_type: str,
        object_id: object,
        details: dict[str, Any],
    ) -> None:
        await conn.execute(
            t.audit_events.insert().values(
                at=utcnow(),
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=str(object_id),
                details=details,
            )
        )

    async def audit_events(self, object_type: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.audit_events).order_by(t.audit_events.c.id)
        if object_type:
            query = query.where(t.audit_events.c.object_type == object_type)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in rows]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

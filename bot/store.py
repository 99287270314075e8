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
    DISMISS_LABELS,
    LEXICON_EDIT_KINDS,
    Case,
    CaseDetail,
    CaseNote,
    CaseStatus,
    Channel,
    ChannelRef,
    Detection,
    DismissReason,
    FeedbackLabel,
    IncomingMessage,
    LexiconEdit,
    NoteKind,
    OutboxItem,
    OutboxStatus,
    PastAnswer,
    PendingReply,
    PendingStatus,
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


class AlreadyProcessed(Conflict):
    """Another worker processed this stored message first (see :meth:`Store._claim`)."""


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
        on_duty=row.on_duty,
        sessions_after=row.sessions_after,
        language=row.language,
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
        paused=row.paused_at is not None,
        watch_from=row.watch_from,
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
        alert_link_id=row.alert_link_id,
    )


def _delivery_from_row(r: Row[Any]) -> Delivery:
    item = _outbox_from_row(r)
    if item.alert_link_id is not None:
        # An alert goes to the volunteer's own account, privately; an unlinked account
        # (no address left) or one that refused the bot is not written to.
        address = None if r.unlinked_at is not None else r.link_user_id
        return Delivery(
            item=item,
            channel=ChannelRef(
                platform=r.link_platform,
                chat_id=address or "",
                title="urgent alerts",
                kind="direct",
            ),
            recipient=address or None,
            direct_ok=r.unreachable_at is None,
        )
    return Delivery(
        item=item,
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

    async def list_users(self) -> list[User]:
        """Every account, active or not, by name."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.users).order_by(t.users.c.username))).all()
        return [_user_from_row(r) for r in rows]

    async def set_on_duty(self, user_id: int, on_duty: bool) -> None:
        """Mark a volunteer on duty (urgent alerts in the console) or off duty."""
        async with self.engine.begin() as conn:
            await conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(on_duty=on_duty)
            )

    async def set_user_language(self, user_id: int, language: str | None) -> None:
        """Remember the console language a person chose (None: follow their browser)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(language=language)
            )

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
        await conn.execute(t.pending_replies.delete().where(t.pending_replies.c.case_id.in_(ids)))
        notes = t.case_notes
        await conn.execute(notes.update().where(notes.c.case_id.in_(ids)).values(question_id=None))
        await conn.execute(notes.delete().where(notes.c.case_id.in_(ids)))
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
                t.channels.c.paused_at.is_(None),  # paused: no history catch-up either
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
        """Store the detection of a message that joins no case. Raises
        :class:`AlreadyProcessed` when another worker processed the message first."""
        async with self.engine.begin() as conn:
            await self._claim(conn, message_id)
            await self._set_detection(conn, message_id, detection, case_id=None)

    @staticmethod
    async def _claim(conn: AsyncConnection, message_id: int) -> None:
        """Take a stored message that is not yet processed, as the transaction's first
        write. A redelivery reaching two instances at once, or the minute's recovery, may
        find the same message unprocessed; the row lock (PostgreSQL) or the write lock
        (SQLite) makes the second wait for the first, and then find it taken."""
        claimed = await conn.execute(
            t.messages.update()
            .where(t.messages.c.id == message_id, t.messages.c.detected.is_(False))
            .values(detected=True)
        )
        if not claimed.rowcount:
            raise AlreadyProcessed(f"message {message_id} was processed by another worker")

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
        Raises :class:`AlreadyProcessed` when another worker processed the message first.
        """
        now = utcnow()
        async with self.engine.begin() as conn:
            await self._claim(conn, message_id)
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
                    dismiss_reason=DismissReason(r.dismiss_reason) if r.dismiss_reason else None,
                )
            )
        return cases

    async def earlier_cases(self, case_id: int, *, limit: int = 10) -> list[Case]:
        """Other cases of the same (pseudonymous) author, newest first."""
        async with self.engine.connect() as conn:
            author = await conn.scalar(sa.select(t.cases.c.author).where(t.cases.c.id == case_id))
            if author is None:
                return []
            rows = (
                await conn.execute(
                    self._case_query()
                    .where(t.cases.c.author == author, t.cases.c.id != case_id)
                    .order_by(t.cases.c.created_at.desc())
                    .limit(limit)
                )
            ).all()
            return await self._cases_from_rows(conn, rows)

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
        self,
        *,
        statuses: Iterable[CaseStatus] = (CaseStatus.OPEN,),
        limit: int = 200,
        urgent: bool | None = None,
        language: str | None = None,
        platform: str | None = None,
        channel_id: int | None = None,
        claimed_by: int | None = None,
        topic: str | None = None,
        substance: str | None = None,
    ) -> list[Case]:
        """Cases in the given statuses, urgent first, then oldest first; the other
        arguments, when given, narrow the list (the queue's filters): ``topic`` keeps the
        cases with a suggested FAQ entry on that topic, ``substance`` those with a message
        naming that substance (a lexicon key)."""
        query = self._case_query().where(t.cases.c.status.in_([s.value for s in statuses]))
        if topic is not None:
            query = query.where(
                sa.exists().where(
                    t.suggestions.c.case_id == t.cases.c.id,
                    t.suggestions.c.entry_id == t.faq_entries.c.id,
                    t.faq_entries.c.topic == topic,
                )
            )
        if substance is not None:
            # The JSON list as text holds the key in quotes on SQLite and PostgreSQL alike;
            # keys are [a-z0-9_-] (checked by the callers), so no LIKE wildcard gets in.
            query = query.where(
                sa.exists().where(
                    t.messages.c.case_id == t.cases.c.id,
                    sa.cast(t.messages.c.substances, sa.Text).like(f'%"{substance}"%'),
                )
            )
        if urgent is not None:
            query = query.where(t.cases.c.urgent.is_(urgent))
        if language is not None:
            query = query.where(t.cases.c.language == language)
        if platform is not None:
            query = query.where(t.channels.c.platform == platform)
        if channel_id is not None:
            query = query.where(t.cases.c.channel_id == channel_id)
        if claimed_by is not None:
            query = query.where(t.cases.c.claimed_by == claimed_by)
        query = query.order_by(t.cases.c.urgent.desc(), t.cases.c.created_at, t.cases.c.id).limit(
            limit
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

    # -- claims ------------------------------------------------------------------------

    @staticmethod
    def _claim_free(user_id: int, lapsed_before: datetime | None) -> sa.ColumnElement[bool]:
        """Nobody else holds the case: unclaimed, held by ``user_id``, or lapsed."""
        free = [t.cases.c.claimed_by.is_(None), t.cases.c.claimed_by == user_id]
        if lapsed_before is not None:
            free += [
                t.cases.c.claim_active_at.is_(None),
                t.cases.c.claim_active_at < lapsed_before,
            ]
        return sa.or_(*free)

    async def _claim_refusal(self, conn: AsyncConnection, case_id: int, verb: str) -> StoreError:
        """Why a claim-changing UPDATE matched no row."""
        case = (await conn.execute(sa.select(t.cases).where(t.cases.c.id == case_id))).first()
        if case is None:
            return NotFound(f"no case {case_id}")
        if case.status != CaseStatus.OPEN.value:
            return Conflict(f"this case is {case.status}: there is nothing to {verb}")
        holder = await conn.scalar(
            sa.select(t.users.c.username).where(t.users.c.id == case.claimed_by)
        )
        return Conflict(f"this case is claimed by {holder}" if holder else "nobody holds this case")

    async def claim_case(
        self, case_id: int, user_id: int, *, lapsed_before: datetime, max_claims: int
    ) -> None:
        """Claim an open case for ``user_id`` in one statement, so two people cannot both
        hold it. A claim whose holder has not acted since ``lapsed_before`` no longer
        counts. Claiming a case one holds already renews it. Raises :class:`Conflict`
        when someone else holds it, or ``user_id`` already holds ``max_claims`` others."""
        now = utcnow()
        other = t.cases.alias("other")
        held = (
            sa.select(sa.func.count())
            .select_from(other)
            .where(
                other.c.claimed_by == user_id,
                other.c.status == CaseStatus.OPEN.value,
                other.c.id != case_id,
                other.c.claim_active_at >= lapsed_before,
            )
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            claimed = await conn.execute(
                t.cases.update()
                .where(
                    t.cases.c.id == case_id,
                    t.cases.c.status == CaseStatus.OPEN.value,
                    self._claim_free(user_id, lapsed_before),
                    held < max_claims,
                )
                .values(
                    claimed_by=user_id,
                    claimed_at=sa.case(
                        (t.cases.c.claimed_by == user_id, t.cases.c.claimed_at), else_=now
                    ),
                    claim_active_at=now,
                )
            )
            if not claimed.rowcount:
                case = (
                    await conn.execute(sa.select(t.cases).where(t.cases.c.id == case_id))
                ).first()
                held_by_other = case is not None and not (
                    case.claimed_by in (None, user_id)
                    or case.claim_active_at is None
                    or case.claim_active_at < lapsed_before
                )
                if case is None or case.status != CaseStatus.OPEN.value or held_by_other:
                    raise await self._claim_refusal(conn, case_id, "claim")
                raise Conflict(
                    f"you already hold {max_claims} open cases: release or answer one first"
                )
            await self._audit(conn, user_id, "case.claim", "case", case_id, {})

    async def release_case(self, case_id: int, user_id: int) -> None:
        """Give back a claim ``user_id`` holds on an open case."""
        async with self.engine.begin() as conn:
            released = await conn.execute(
                t.cases.update()
                .where(
                    t.cases.c.id == case_id,
                    t.cases.c.status == CaseStatus.OPEN.value,
                    t.cases.c.claimed_by == user_id,
                )
                .values(claimed_by=None, claimed_at=None, claim_active_at=None)
            )
            if not released.rowcount:
                raise await self._claim_refusal(conn, case_id, "release")
            await self._audit(conn, user_id, "case.release", "case", case_id, {})

    async def assign_case(self, case_id: int, assignee: int | None, *, by: int) -> None:
        """A coordinator gives an open case to ``assignee`` (or to nobody), whoever held
        it; the claim counts as fresh."""
        now = utcnow()
        values: dict[str, Any] = (
            {"claimed_by": assignee, "claimed_at": now, "claim_active_at": now}
            if assignee is not None
            else {"claimed_by": None, "claimed_at": None, "claim_active_at": None}
        )
        async with self.engine.begin() as conn:
            before = await conn.scalar(
                sa.select(t.cases.c.claimed_by).where(t.cases.c.id == case_id)
            )
            assigned = await conn.execute(
                t.cases.update()
                .where(t.cases.c.id == case_id, t.cases.c.status == CaseStatus.OPEN.value)
                .values(**values)
            )
            if not assigned.rowcount:
                raise await self._claim_refusal(conn, case_id, "assign")
            await self._audit(
                conn, by, "case.assign", "case", case_id, {"from": before, "to": assignee}
            )

    async def touch_claim(self, case_id: int, user_id: int, *, lapsed_before: datetime) -> bool:
        """The holder acted on the case (opened it): the claim's inactivity clock restarts.
        A claim that has already lapsed stays lapsed. Returns whether it was renewed."""
        async with self.engine.begin() as conn:
            touched = await conn.execute(
                t.cases.update()
                .where(
                    t.cases.c.id == case_id,
                    t.cases.c.status == CaseStatus.OPEN.value,
                    t.cases.c.claimed_by == user_id,
                    t.cases.c.claim_active_at >= lapsed_before,
                )
                .values(claim_active_at=utcnow())
            )
        return bool(touched.rowcount)

    async def unclaimed_urgent_cases(self) -> dict[int, datetime]:
        """Every open urgent case nobody has claimed, with when it was opened: what the
        minute's re-alerting reads (not the queue's rows, which load every flagged
        message's reasons, and stop at a page)."""
        query = sa.select(t.cases.c.id, t.cases.c.created_at).where(
            t.cases.c.status == CaseStatus.OPEN.value,
            t.cases.c.urgent.is_(True),
            t.cases.c.claimed_by.is_(None),
        )
        async with self.engine.connect() as conn:
            return {row.id: row.created_at for row in await conn.execute(query)}

    async def release_lapsed_claims(self, lapsed_before: datetime) -> list[int]:
        """Clear the claims on open cases whose holder has not acted since
        ``lapsed_before``. Returns those cases' ids."""
        lapsed = sa.and_(
            t.cases.c.status == CaseStatus.OPEN.value,
            t.cases.c.claimed_by.is_not(None),
            sa.or_(t.cases.c.claim_active_at.is_(None), t.cases.c.claim_active_at < lapsed_before),
        )
        async with self.engine.begin() as conn:
            ids = list((await conn.scalars(sa.select(t.cases.c.id).where(lapsed))).all())
            if ids:
                await conn.execute(
                    t.cases.update()
                    .where(t.cases.c.id.in_(ids), lapsed)
                    .values(claimed_by=None, claimed_at=None, claim_active_at=None)
                )
        return ids

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
        claim_lapsed_before: datetime | None = None,
        claimant: int | None = None,
    ) -> Reply:
        """Record an approved reply and its outbox row in one transaction.

        ``claimant`` is who must hold (or may take) the case: the approver, unless a
        second approver approves someone else's reply (then its writer).

        The case is claimed by the approver if nobody had it, and leaves the open queue. A
        case claimed by someone else, or dismissed, raises :class:`Conflict` (checked and
        claimed in one statement, so two volunteers cannot both answer); a claim whose
        holder has not acted since ``claim_lapsed_before`` does not count. A repeated
        ``request_key`` (a double click, a retried API call) returns the reply it made
        the first time instead of sending a second one.
        """
        if request_key is not None:
            existing = await self._reply_by_key(request_key)
            if existing is not None:
                return existing
        now = utcnow()
        holder = claimant if claimant is not None else approved_by
        try:
            async with self.engine.begin() as conn:
                claimed = await conn.execute(
                    t.cases.update()
                    .where(
                        t.cases.c.id == case_id,
                        t.cases.c.status != CaseStatus.DISMISSED.value,
                        self._claim_free(holder, claim_lapsed_before),
                    )
                    .values(
                        status=CaseStatus.ANSWERED.value,
                        claimed_by=holder,
                        claimed_at=sa.case(
                            (
                                t.cases.c.claimed_by == holder,
                                sa.func.coalesce(t.cases.c.claimed_at, now),
                            ),
                            else_=now,
                        ),
                        claim_active_at=now,
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
                    name = await conn.scalar(
                        sa.select(t.users.c.username).where(t.users.c.id == case.claimed_by)
                    )
                    raise Conflict(f"this case is claimed by {name}")
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
                        t.alert_links.c.platform.label("link_platform"),
                        t.alert_links.c.platform_user_id.label("link_user_id"),
                        t.alert_links.c.unlinked_at,
                        t.alert_links.c.unreachable_at,
                    )
                    .outerjoin(t.channels, t.channels.c.id == t.outbox.c.channel_id)
                    .outerjoin(t.contacts, t.contacts.c.pseudonym == t.outbox.c.recipient)
                    .outerjoin(t.alert_links, t.alert_links.c.id == t.outbox.c.alert_link_id)
                    .where(t.outbox.c.id.in_(ids))
                    .order_by(t.outbox.c.id)
                )
            ).all()
        return [_delivery_from_row(r) for r in rows]

    async def renew_lease(self, outbox_id: int, *, attempts: int, until: datetime) -> bool:
        """Extend the lease of a row this worker claimed, just before sending it. False
        when the row is no longer ours (its lease ran out and another worker claimed it,
        which counted a new attempt): then it must not be sent from here."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                t.outbox.update()
                .where(
                    t.outbox.c.id == outbox_id,
                    t.outbox.c.status == OutboxStatus.SENDING.value,
                    t.outbox.c.attempts == attempts,
                )
                .values(lease_until=until)
            )
        return bool(result.rowcount)

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

    async def erase_person(self, pseudonym: str, *, by: int | None = None) -> dict[str, int]:
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
            await self._audit(conn, by, "person.erase", "person", None, counts)
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

    # -- answers history -----------------------------------------------------------------

    async def past_answers(
        self,
        *,
        text: str = "",
        entry_id: str | None = None,
        substance: str | None = None,
        language: str | None = None,
        volunteer: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[PastAnswer]:
        """Approved replies (not failed ones), newest first, narrowed by the arguments:
        words of the text (all of them, any case), the FAQ entry used, a substance named
        in the case, the case's language, the approver's name, a period."""
        approver = t.users.alias("approver")
        query = (
            sa.select(
                t.replies.c.id,
                t.replies.c.case_id,
                t.replies.c.text,
                t.replies.c.entry_id,
                t.replies.c.status,
                t.replies.c.approved_at,
                t.cases.c.language,
                approver.c.username,
            )
            .join(t.cases, t.cases.c.id == t.replies.c.case_id)
            .join(approver, approver.c.id == t.replies.c.approved_by)
            .where(t.replies.c.status != ReplyStatus.FAILED.value)
            .order_by(t.replies.c.approved_at.desc(), t.replies.c.id.desc())
        )
        for word in text.split()[:10]:
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(t.replies.c.text.ilike(f"%{escaped}%", escape="\\"))
        if entry_id:
            query = query.where(t.replies.c.entry_id == entry_id)
        if language:
            query = query.where(t.cases.c.language == language)
        if volunteer:
            query = query.where(approver.c.username == volunteer)
        if since is not None:
            query = query.where(t.replies.c.approved_at >= since)
        if until is not None:
            query = query.where(t.replies.c.approved_at < until)
        # Substances live on the case's messages (JSON): narrowed here, over a few pages.
        query = query.limit(limit if substance is None else limit * 10)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            case_ids = list({r.case_id for r in rows})
            named: dict[int, dict[str, None]] = {i: {} for i in case_ids}
            if case_ids:
                for case_id, found in (
                    await conn.execute(
                        sa.select(t.messages.c.case_id, t.messages.c.substances).where(
                            t.messages.c.case_id.in_(case_ids), t.messages.c.flagged.is_(True)
                        )
                    )
                ).all():
                    named[case_id].update(dict.fromkeys(found or ()))
        answers = [
            PastAnswer(
                reply_id=r.id,
                case_id=r.case_id,
                text=r.text,
                entry_id=r.entry_id,
                language=r.language,
                approved_by=r.username,
                approved_at=r.approved_at,
                status=ReplyStatus(r.status),
                substances=tuple(named[r.case_id]),
            )
            for r in rows
        ]
        if substance:
            answers = [a for a in answers if substance in a.substances]
        return answers[:limit]

    async def reply_text(self, reply_id: int) -> str:
        found = await self._reply_by_id(reply_id)
        if found is None:
            raise NotFound(f"no reply {reply_id}")
        return found.text

    # -- team notes, escalation to experts ---------------------------------------------

    async def add_note(self, case_id: int, author: int, kind: NoteKind, text: str) -> CaseNote:
        """An internal note, or a question for the experts, on a case."""
        if kind is NoteKind.ANSWER:
            raise ValueError("answers are added with answer_question")
        async with self.engine.begin() as conn:
            if not await conn.scalar(sa.select(t.cases.c.id).where(t.cases.c.id == case_id)):
                raise NotFound(f"no case {case_id}")
            result = await conn.execute(
                t.case_notes.insert().values(
                    case_id=case_id, author=author, kind=kind.value, text=text, created_at=utcnow()
                )
            )
            note_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            if kind is NoteKind.QUESTION:
                await self._audit(conn, author, "case.escalate", "case", case_id, {"note": note_id})
        (note,) = await self._notes_where(t.case_notes.c.id == note_id)
        return note

    async def answer_question(self, question_id: int, expert: int, text: str) -> CaseNote:
        """An expert answers an open question (one answer closes it; a second one, or an
        answer to something that is not an open question, is refused)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            closed = await conn.execute(
                t.case_notes.update()
                .where(
                    t.case_notes.c.id == question_id,
                    t.case_notes.c.kind == NoteKind.QUESTION.value,
                    t.case_notes.c.answered_at.is_(None),
                )
                .values(answered_at=now)
            )
            if not closed.rowcount:
                exists = await conn.scalar(
                    sa.select(t.case_notes.c.id).where(
                        t.case_notes.c.id == question_id,
                        t.case_notes.c.kind == NoteKind.QUESTION.value,
                    )
                )
                if not exists:
                    raise NotFound(f"no question {question_id}")
                raise Conflict("this question was answered already")
            case_id = await conn.scalar(
                sa.select(t.case_notes.c.case_id).where(t.case_notes.c.id == question_id)
            )
            result = await conn.execute(
                t.case_notes.insert().values(
                    case_id=case_id,
                    author=expert,
                    kind=NoteKind.ANSWER.value,
                    text=text,
                    question_id=question_id,
                    created_at=now,
                )
            )
            answer_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            await self._audit(
                conn, expert, "question.answer", "case", case_id, {"question": question_id}
            )
        (answer,) = await self._notes_where(t.case_notes.c.id == answer_id)
        return answer

    async def case_notes(self, case_id: int) -> list[CaseNote]:
        return await self._notes_where(t.case_notes.c.case_id == case_id)

    async def questions(self, *, open_only: bool = True) -> list[CaseNote]:
        """Questions escalated to the experts, oldest first (open ones only by default)."""
        conditions = [t.case_notes.c.kind == NoteKind.QUESTION.value]
        if open_only:
            conditions.append(t.case_notes.c.answered_at.is_(None))
        return await self._notes_where(*conditions)

    async def note(self, note_id: int) -> CaseNote:
        found = await self._notes_where(t.case_notes.c.id == note_id)
        if not found:
            raise NotFound(f"no note {note_id}")
        return found[0]

    async def _notes_where(self, *conditions: sa.ColumnElement[bool]) -> list[CaseNote]:
        query = (
            sa.select(t.case_notes, t.users.c.username, t.users.c.role)
            .join(t.users, t.users.c.id == t.case_notes.c.author)
            .where(*conditions)
            .order_by(t.case_notes.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            CaseNote(
                id=r.id,
                case_id=r.case_id,
                author=r.username,
                author_role=r.role,
                kind=NoteKind(r.kind),
                text=r.text,
                created_at=r.created_at,
                question_id=r.question_id,
                answered_at=r.answered_at,
            )
            for r in rows
        ]

    # -- retention ------------------------------------------------------------------------

    async def purge(
        self,
        *,
        unanswered_before: datetime,
        answered_before: datetime,
        batch: int = 500,
        channels: Sequence[int] | None = None,
        other_than: Sequence[int] = (),
    ) -> dict[str, int]:
        """Delete what retention says has been kept long enough: cases (with their
        messages, suggestions, replies and outbox rows) whose last activity is older than
        ``answered_before`` for answered ones and ``unanswered_before`` for the others,
        and messages in no case older than ``unanswered_before``. Each purged case leaves
        an anonymous row in ``case_archive`` for reports. Contacts of people with no case
        left go too. Works in batches of ``batch`` cases, one transaction each.
        ``channels`` limits it to those channels, ``other_than`` leaves those out (the
        channels with a retention of their own, bot/retention.py)."""

        def scope(column: sa.Column[Any]) -> list[sa.ColumnElement[bool]]:
            limits: list[sa.ColumnElement[bool]] = []
            if channels is not None:
                limits.append(column.in_(channels))
            if other_than:
                limits.append(column.not_in(other_than))
            return limits

        due = sa.or_(
            sa.and_(
                t.cases.c.status == CaseStatus.ANSWERED.value,
                t.cases.c.updated_at < answered_before,
            ),
            sa.and_(
                t.cases.c.status != CaseStatus.ANSWERED.value,
                t.cases.c.updated_at < unanswered_before,
            ),
        )
        counts = {"cases": 0, "messages": 0}
        while True:
            async with self.engine.begin() as conn:
                ids = list(
                    (
                        await conn.scalars(
                            sa.select(t.cases.c.id)
                            .where(due, *scope(t.cases.c.channel_id))
                            .order_by(t.cases.c.id)
                            .limit(batch)
                        )
                    ).all()
                )
                if not ids:
                    break
                await self._archive_cases(conn, ids)
                gone = await conn.execute(t.messages.delete().where(t.messages.c.case_id.in_(ids)))
                counts["messages"] += gone.rowcount or 0
                counts["cases"] += await self._delete_cases(
                    conn, sa.select(t.cases.c.id).where(t.cases.c.id.in_(ids))
                )
                await self._audit(
                    conn,
                    None,
                    "retention.purge",
                    "case",
                    ids[0],
                    {"cases": len(ids), "to": ids[-1]},
                )
        async with self.engine.begin() as conn:
            loose = await conn.execute(
                t.messages.delete().where(
                    t.messages.c.case_id.is_(None),
                    t.messages.c.received_at < unanswered_before,
                    *scope(t.messages.c.channel_id),
                )
            )
            counts["messages"] += loose.rowcount or 0
            await self._drop_orphan_contacts(conn)
        return counts

    async def _archive_cases(self, conn: AsyncConnection, ids: list[int]) -> None:
        rows = (
            await conn.execute(
                sa.select(t.cases, t.channels.c.platform)
                .join(t.channels, t.channels.c.id == t.cases.c.channel_id)
                .where(t.cases.c.id.in_(ids))
            )
        ).all()
        substances: dict[int, dict[str, None]] = {i: {} for i in ids}
        for case_id, found in (
            await conn.execute(
                sa.select(t.messages.c.case_id, t.messages.c.substances).where(
                    t.messages.c.case_id.in_(ids), t.messages.c.flagged.is_(True)
                )
            )
        ).all():
            substances[case_id].update(dict.fromkeys(found or ()))
        topics: dict[int, dict[str, None]] = {i: {} for i in ids}
        for case_id, entry_id in (
            await conn.execute(
                sa.select(t.suggestions.c.case_id, t.suggestions.c.entry_id)
                .where(t.suggestions.c.case_id.in_(ids))
                .order_by(t.suggestions.c.rank)
            )
        ).all():
            topics[case_id][entry_id] = None
        replies: dict[int, list[Any]] = {i: [] for i in ids}
        for r in (
            await conn.execute(
                sa.select(t.replies.c.case_id, t.replies.c.entry_id, t.replies.c.approved_at)
                .where(t.replies.c.case_id.in_(ids))
                .order_by(t.replies.c.approved_at)
            )
        ).all():
            replies[r.case_id].append(r.approved_at)
            if r.entry_id:
                topics[r.case_id][r.entry_id] = None
        now = utcnow()
        if rows:
            await conn.execute(
                t.case_archive.insert(),
                [
                    {
                        "case_id": r.id,
                        "channel_id": r.channel_id,
                        "platform": r.platform,
                        "language": r.language,
                        "status": r.status,
                        "urgent": r.urgent,
                        "dismiss_reason": r.dismiss_reason,
                        "substances": list(substances[r.id]),
                        "topics": list(topics[r.id]),
                        "replies": len(replies[r.id]),
                        "created_at": r.created_at,
                        "first_reply_at": replies[r.id][0] if replies[r.id] else None,
                        "closed_at": r.updated_at,
                        "purged_at": now,
                    }
                    for r in rows
                ],
            )

    async def archived_cases(self) -> list[dict[str, Any]]:
        """The anonymous archive of purged cases, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(t.case_archive).order_by(t.case_archive.c.id))
            ).all()
        return [dict(r._mapping) for r in rows]

    # -- four-eyes: replies waiting for a second approver --------------------------------

    async def propose_reply(
        self,
        case_id: int,
        *,
        text: str,
        visibility: Visibility,
        written_by: int,
        reasons: Sequence[str],
        entry_id: str | None = None,
        request_key: str | None = None,
        claim_lapsed_before: datetime | None = None,
    ) -> PendingReply:
        """Put a reply before a second approver. The writer holds (or takes) the case,
        which stays open; one reply waits per case. A repeated ``request_key`` returns
        the first proposal."""
        if request_key is not None:
            existing = await self._pending_where(t.pending_replies.c.request_key == request_key)
            if existing:
                return existing[0]
        now = utcnow()
        try:
            async with self.engine.begin() as conn:
                held = await conn.execute(
                    t.cases.update()
                    .where(
                        t.cases.c.id == case_id,
                        t.cases.c.status == CaseStatus.OPEN.value,
                        self._claim_free(written_by, claim_lapsed_before),
                    )
                    .values(
                        claimed_by=written_by,
                        claimed_at=sa.case(
                            (
                                t.cases.c.claimed_by == written_by,
                                sa.func.coalesce(t.cases.c.claimed_at, now),
                            ),
                            else_=now,
                        ),
                        claim_active_at=now,
                        updated_at=now,
                    )
                )
                if not held.rowcount:
                    raise await self._claim_refusal(conn, case_id, "answer")
                waiting = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(t.pending_replies)
                    .where(
                        t.pending_replies.c.case_id == case_id,
                        t.pending_replies.c.status == PendingStatus.AWAITING.value,
                    )
                )
                if waiting:
                    raise Conflict("a reply to this case is already waiting for a second approver")
                result = await conn.execute(
                    t.pending_replies.insert().values(
                        case_id=case_id,
                        text=text,
                        visibility=visibility.value,
                        entry_id=entry_id,
                        written_by=written_by,
                        reasons=list(reasons),
                        status=PendingStatus.AWAITING.value,
                        request_key=request_key,
                        created_at=now,
                    )
                )
                pending_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                await self._audit(
                    conn,
                    written_by,
                    "reply.propose",
                    "case",
                    case_id,
                    {"pending": pending_id, "reasons": list(reasons)},
                )
        except sa.exc.IntegrityError:
            if request_key is not None:
                existing = await self._pending_where(t.pending_replies.c.request_key == request_key)
                if existing:
                    return existing[0]
            raise
        (found,) = await self._pending_where(t.pending_replies.c.id == pending_id)
        return found

    async def approve_pending(
        self, pending_id: int, approver: int, *, text: str | None = None
    ) -> Reply:
        """The second approver approves (``text``: as they edited it): the reply and its
        outbox row are written as for any approved reply. Its writer cannot approve it.
        Two approvers at once make one reply (its request key is the pending id)."""
        found = await self._pending_where(t.pending_replies.c.id == pending_id)
        if not found:
            raise NotFound(f"no reply {pending_id} is waiting")
        pending = found[0]
        if pending.written_by == approver:
            raise Conflict("a second person has to approve a reply you wrote")
        if pending.status is not PendingStatus.AWAITING:
            raise Conflict(f"this reply was {pending.status.value} already")
        final = (text or "").strip() or pending.text
        reply = await self.approve_reply(
            pending.case_id,
            text=final,
            visibility=pending.visibility,
            written_by=pending.written_by,
            approved_by=approver,
            entry_id=pending.entry_id,
            request_key=f"pending:{pending_id}",
            claimant=pending.written_by,
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                t.pending_replies.update()
                .where(
                    t.pending_replies.c.id == pending_id,
                    t.pending_replies.c.status == PendingStatus.AWAITING.value,
                )
                .values(
                    status=PendingStatus.APPROVED.value,
                    reviewed_by=approver,
                    reviewed_at=utcnow(),
                    reply_id=reply.id,
                )
            )
            await self._audit(
                conn,
                approver,
                "reply.second_approval",
                "reply",
                reply.id,
                {"pending": pending_id, "edited": final != pending.text},
            )
        return reply

    async def return_pending(self, pending_id: int, reviewer: int, comment: str) -> None:
        """Send a waiting reply back to its writer with a comment."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                t.pending_replies.update()
                .where(
                    t.pending_replies.c.id == pending_id,
                    t.pending_replies.c.status == PendingStatus.AWAITING.value,
                )
                .values(
                    status=PendingStatus.RETURNED.value,
                    reviewed_by=reviewer,
                    reviewed_at=utcnow(),
                    review_comment=comment,
                )
            )
            if not done.rowcount:
                raise Conflict("this reply is no longer waiting")
            await self._audit(
                conn, reviewer, "reply.return", "pending_reply", pending_id, {"comment": comment}
            )

    async def pending_replies(
        self, *, case_id: int | None = None, awaiting: bool = False
    ) -> list[PendingReply]:
        """Replies put before a second approver, oldest first."""
        conditions = []
        if case_id is not None:
            conditions.append(t.pending_replies.c.case_id == case_id)
        if awaiting:
            conditions.append(t.pending_replies.c.status == PendingStatus.AWAITING.value)
        return await self._pending_where(*conditions)

    async def _pending_where(self, *conditions: sa.ColumnElement[bool]) -> list[PendingReply]:
        writer = t.users.alias("writer")
        reviewer = t.users.alias("reviewer")
        query = (
            sa.select(
                t.pending_replies,
                writer.c.username.label("writer_name"),
                reviewer.c.username.label("reviewer_name"),
            )
            .join(writer, writer.c.id == t.pending_replies.c.written_by)
            .outerjoin(reviewer, reviewer.c.id == t.pending_replies.c.reviewed_by)
            .where(*conditions)
            .order_by(t.pending_replies.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            PendingReply(
                id=r.id,
                case_id=r.case_id,
                text=r.text,
                visibility=Visibility(r.visibility),
                entry_id=r.entry_id,
                written_by=r.written_by,
                written_by_name=r.writer_name,
                reasons=tuple(r.reasons or ()),
                status=PendingStatus(r.status),
                created_at=r.created_at,
                reviewed_by_name=r.reviewer_name,
                review_comment=r.review_comment,
                reply_id=r.reply_id,
            )
            for r in rows
        ]

    # -- detection feedback ------------------------------------------------------------

    async def dismiss_case(
        self,
        case_id: int,
        user_id: int,
        reason: DismissReason,
        *,
        claim_lapsed_before: datetime | None = None,
    ) -> None:
        """Dismiss an open case with a reason (one UPDATE: a case someone else holds, or
        that was answered or dismissed meanwhile, raises :class:`Conflict`)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            done = await conn.execute(
                t.cases.update()
                .where(
                    t.cases.c.id == case_id,
                    t.cases.c.status == CaseStatus.OPEN.value,
                    self._claim_free(user_id, claim_lapsed_before),
                )
                .values(
                    status=CaseStatus.DISMISSED.value,
                    dismiss_reason=reason.value,
                    claimed_by=None,
                    claimed_at=None,
                    claim_active_at=None,
                    updated_at=now,
                )
            )
            if not done.rowcount:
                raise await self._claim_refusal(conn, case_id, "dismiss")
            await self._audit(conn, user_id, "case.dismiss", "case", case_id, {"reason": reason})

    async def feedback_labels(self) -> list[FeedbackLabel]:
        """The flagged messages of answered cases (drug-related) and of cases dismissed
        with a reason that says something (see :data:`~bot.models.DISMISS_LABELS`).
        Deleted messages are left out; erased or expired ones are gone with their rows."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        t.messages.c.id,
                        t.messages.c.text,
                        t.messages.c.language,
                        t.cases.c.status,
                        t.cases.c.dismiss_reason,
                    )
                    .join(t.cases, t.cases.c.id == t.messages.c.case_id)
                    .where(
                        t.messages.c.flagged.is_(True),
                        t.messages.c.deleted_at.is_(None),
                        t.cases.c.status.in_(
                            [CaseStatus.ANSWERED.value, CaseStatus.DISMISSED.value]
                        ),
                    )
                    .order_by(t.messages.c.id)
                )
            ).all()
        labels = []
        for r in rows:
            if r.status == CaseStatus.ANSWERED.value:
                label: bool | None = True
                source = "answered"
            elif r.dismiss_reason in DismissReason.__members__.values():
                label = DISMISS_LABELS[DismissReason(r.dismiss_reason)]
                source = f"dismissed:{r.dismiss_reason}"
            else:  # dismissed by the system (the messages were deleted)
                label = None
            if label is not None and r.text.strip():
                labels.append(FeedbackLabel(r.id, r.text, r.language, label, source))
        return labels

    # -- lexicon edits -------------------------------------------------------------------

    async def add_lexicon_edit(
        self,
        *,
        kind: str,
        term: str,
        author: int,
        substance: str | None = None,
        strong: bool = False,
        context: Sequence[str] = (),
        language: str | None = None,
        note: str = "",
        source: str = "",
        licence: str = "",
    ) -> int:
        if kind not in LEXICON_EDIT_KINDS:
            raise ValueError(f"unknown lexicon edit kind {kind!r}")
        now = utcnow()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                t.lexicon_edits.insert().values(
                    kind=kind,
                    term=term,
                    substance=substance,
                    strong=strong,
                    context=list(context),
                    language=language,
                    note=note,
                    source=source,
                    licence=licence,
                    author=author,
                    created_at=now,
                )
            )
            edit_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            await self._audit(
                conn,
                author,
                "lexicon.add",
                "lexicon_edit",
                edit_id,
                {"kind": kind, "term": term, "substance": substance, "context": list(context)},
            )
        return edit_id

    async def remove_lexicon_edit(self, edit_id: int, user_id: int) -> None:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                t.lexicon_edits.update()
                .where(t.lexicon_edits.c.id == edit_id, t.lexicon_edits.c.removed_at.is_(None))
                .values(removed_by=user_id, removed_at=utcnow())
            )
            if not done.rowcount:
                raise NotFound(f"no lexicon edit {edit_id} in use")
            await self._audit(conn, user_id, "lexicon.remove", "lexicon_edit", edit_id, {})

    async def lexicon_edits(self, *, include_removed: bool = False) -> list[LexiconEdit]:
        author = t.users.alias("author")
        remover = t.users.alias("remover")
        query = (
            sa.select(
                t.lexicon_edits,
                author.c.username.label("author_name"),
                remover.c.username.label("remover_name"),
            )
            .join(author, author.c.id == t.lexicon_edits.c.author)
            .outerjoin(remover, remover.c.id == t.lexicon_edits.c.removed_by)
            .order_by(t.lexicon_edits.c.id)
        )
        if not include_removed:
            query = query.where(t.lexicon_edits.c.removed_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LexiconEdit(
                id=r.id,
                kind=r.kind,
                term=r.term,
                substance=r.substance,
                strong=r.strong,
                context=tuple(r.context or ()),
                language=r.language,
                note=r.note,
                source=r.source,
                licence=r.licence,
                author=r.author_name,
                created_at=r.created_at,
                removed_by=r.remover_name,
                removed_at=r.removed_at,
            )
            for r in rows
        ]

    async def lexicon_version(self) -> tuple[int, int]:
        """Changes when an edit is added or removed (for instances to notice)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.coalesce(sa.func.max(t.lexicon_edits.c.id), 0),
                        sa.func.count(t.lexicon_edits.c.removed_at),
                    )
                )
            ).one()
        return int(row[0]), int(row[1])

    # -- retrained detection models ------------------------------------------------------

    async def save_detection_model(self, model: bytes, info: dict[str, Any]) -> int:
        """Store a retrained model as the one in use (the previous stays, inactive)."""
        async with self.engine.begin() as conn:
            await conn.execute(t.detection_models.update().values(active=False))
            result = await conn.execute(
                t.detection_models.insert().values(
                    model=model, info=info, active=True, created_at=utcnow()
                )
            )
            model_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            await self._audit(conn, None, "detection.model", "detection_model", model_id, {})
        return model_id

    async def active_detection_model(self) -> tuple[int, bytes, dict[str, Any]] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(t.detection_models)
                    .where(t.detection_models.c.active.is_(True))
                    .order_by(t.detection_models.c.id.desc())
                    .limit(1)
                )
            ).first()
        return (row.id, bytes(row.model), dict(row.info)) if row else None

    async def active_detection_model_id(self) -> int | None:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                sa.select(sa.func.max(t.detection_models.c.id)).where(
                    t.detection_models.c.active.is_(True)
                )
            )
        return int(value) if value is not None else None

    async def roll_back_detection_model(self) -> int | None:
        """Retire the model in use; the one before it (or the shipped file, when there is
        none) is used again. Returns the id now in use, None for the shipped file."""
        async with self.engine.begin() as conn:
            current = await conn.scalar(
                sa.select(sa.func.max(t.detection_models.c.id)).where(
                    t.detection_models.c.active.is_(True)
                )
            )
            if current is None:
                raise NotFound("no retrained model is in use: the shipped one is")
            await conn.execute(
                t.detection_models.update()
                .where(t.detection_models.c.id == current)
                .values(active=False)
            )
            previous = await conn.scalar(
                sa.select(sa.func.max(t.detection_models.c.id)).where(
                    t.detection_models.c.id < current
                )
            )
            if previous is not None:
                await conn.execute(
                    t.detection_models.update()
                    .where(t.detection_models.c.id == previous)
                    .values(active=True)
                )
            await self._audit(
                conn, None, "detection.rollback", "detection_model", current, {"now": previous}
            )
        return int(previous) if previous is not None else None

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

"""Console sessions that logging out has ended.

A console session is a signed cookie (Starlette's); on its own it stays valid until it
expires, so a copy taken before logging out would still work. Each session therefore
carries a random id, and logging out records that id here, in the database every
instance shares: from then on the cookie is refused everywhere. A row is kept until the
cookie would have expired anyway (``console.session_hours``), then :func:`forget_expired`
drops it (the minute's housekeeping calls it).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa

from bot import schema as t
from bot.models import utcnow
from bot.store import Store


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


async def end(store: Store, session_id: str, user_id: int, *, valid_hours: int) -> None:
    """The session ``session_id`` is over, on every instance."""
    now = utcnow()
    async with store.engine.begin() as conn:
        found = await conn.scalar(
            sa.select(t.ended_sessions.c.session_id).where(
                t.ended_sessions.c.session_id == session_id
            )
        )
        if found is None:
            await conn.execute(
                t.ended_sessions.insert().values(
                    session_id=session_id,
                    user_id=user_id,
                    ended_at=now,
                    expires_at=now + timedelta(hours=valid_hours),
                )
            )


async def ended(store: Store, session_id: str) -> bool:
    async with store.engine.connect() as conn:
        found = await conn.scalar(
            sa.select(t.ended_sessions.c.session_id).where(
                t.ended_sessions.c.session_id == session_id
            )
        )
    return found is not None


async def forget_expired(store: Store) -> int:
    """Drop the records of sessions whose cookies have expired; returns how many."""
    async with store.engine.begin() as conn:
        result = await conn.execute(
            t.ended_sessions.delete().where(t.ended_sessions.c.expires_at < utcnow())
        )
    return int(result.rowcount or 0)

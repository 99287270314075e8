"""Invitations: a coordinator creates a one-time link, the invitee opens it and chooses
their own username and password. Nobody else ever knows the password.

The link carries a random token; only its SHA-256 is stored, so a copy of the database
cannot be used to join. A link works once (checked and spent in one conditional
``UPDATE``, so two people opening it at the same moment cannot both use it), until
``console.invite_hours`` after it was made, unless a coordinator withdraws it first.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot import schema as t
from bot.models import Role, User, utcnow
from bot.passwords import MIN_PASSWORD_LENGTH, token_hash
from bot.store import NotFound, Store, StoreError

#: What a username may be: letters (any alphabet), digits, dots, dashes, underscores.
USERNAME = re.compile(r"[\w.-]{2,50}")
MAX_PASSWORD_LENGTH = 1000


class InviteError(StoreError):
    """The link cannot be used (``state``: unknown, used, expired, withdrawn) or what was
    chosen with it is refused (``state``: open); the message says why."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class Invite:
    id: int
    role: Role
    trained: bool
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None  # the username chosen with it
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``open``, ``used``, ``withdrawn`` or ``expired``."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "withdrawn"
        return "expired" if (now or utcnow()) >= self.expires_at else "open"

    @classmethod
    def from_row(cls, row: Row[Any]) -> Invite:
        return cls(
            id=row.id,
            role=Role(row.role),
            trained=row.trained,
            created_by=row.created_by_name,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            used_by=row.used_by_name,
            revoked_at=row.revoked_at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role.value,
            "trained": self.trained,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "state": self.state(),
        }


def _query() -> sa.Select[Any]:
    maker = t.users.alias("maker")
    joined = t.users.alias("joined")
    return (
        sa.select(
            t.invites,
            maker.c.username.label("created_by_name"),
            joined.c.username.label("used_by_name"),
        )
        .join(maker, maker.c.id == t.invites.c.created_by)
        .outerjoin(joined, joined.c.id == t.invites.c.user_id)
    )


def check_username(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise InviteError(
            "open",
            "a username has 2 to 50 letters, digits, dots, dashes or underscores (no spaces)",
        )


def check_password(password: str, again: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InviteError("open", f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InviteError("open", f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    if password != again:
        raise InviteError("open", "the two passwords differ")


async def create(
    store: Store, *, role: Role, trained: bool, by: int, hours: int
) -> tuple[str, Invite]:
    """A new invitation; returns the token (for the link, shown once) and the invitation."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with store.engine.begin() as conn:
        result = await conn.execute(
            t.invites.insert().values(
                token_hash=token_hash(token),
                role=role.value,
                trained=trained,
                created_by=by,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
            )
        )
        invite_id = result.inserted_primary_key[0]  # type: ignore[index]
        await store._audit(
            conn,
            by,
            "invite.create",
            "invite",
            invite_id,
            {"role": role.value, "trained": trained, "hours": hours},
        )
    return token, await invite(store, invite_id)


async def invite(store: Store, invite_id: int) -> Invite:
    async with store.engine.connect() as conn:
        row = (await conn.execute(_query().where(t.invites.c.id == invite_id))).first()
    if row is None:
        raise NotFound(f"no invitation {invite_id}")
    return Invite.from_row(row)


async def find(store: Store, token: str) -> Invite | None:
    """The invitation behind a link's token, in whatever state; None for a made-up one."""
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(_query().where(t.invites.c.token_hash == token_hash(token)))
        ).first()
    return Invite.from_row(row) if row else None


async def open_invites(store: Store) -> list[Invite]:
    """Invitations not used, withdrawn or expired yet, newest first."""
    query = (
        _query()
        .where(
            t.invites.c.used_at.is_(None),
            t.invites.c.revoked_at.is_(None),
            t.invites.c.expires_at > utcnow(),
        )
        .order_by(t.invites.c.id.desc())
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Invite.from_row(r) for r in rows]


async def revoke(store: Store, invite_id: int, *, by: int) -> None:
    """Withdraw an invitation that has not been used yet."""
    async with store.engine.begin() as conn:
        done = await conn.execute(
            t.invites.update()
            .where(
                t.invites.c.id == invite_id,
                t.invites.c.used_at.is_(None),
                t.invites.c.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
        )
        if done.rowcount:
            await store._audit(conn, by, "invite.revoke", "invite", invite_id, {})
    if not done.rowcount:
        await invite(store, invite_id)  # NotFound for an unknown one
        raise InviteError("closed", "this invitation was used or withdrawn already")


class _Spent(Exception):
    pass


def refusal(found: Invite | None) -> InviteError:
    """Why a link cannot be used, in words for the person who opened it."""
    if found is None:
        return InviteError("unknown", "this invitation link is not valid")
    state = found.state()
    messages = {
        "used": "this invitation link has been used already",
        "withdrawn": "this invitation was withdrawn",
        "expired": "this invitation link has expired",
    }
    return InviteError(state, messages.get(state, "this invitation link cannot be used now"))


async def accept(store: Store, token: str, *, username: str, password_hash: str) -> User:
    """Spend the invitation on a new account. The name is checked before (with
    :func:`check_username`); a name someone has (in any case) is refused and the link
    stays usable."""
    now = utcnow()
    digest = token_hash(token)
    try:
        async with store.engine.begin() as conn:
            taken = await conn.scalar(
                sa.select(t.users.c.id).where(sa.func.lower(t.users.c.username) == username.lower())
            )
            if taken is not None:
                raise InviteError("open", "that username is taken; choose another")
            spent = await conn.execute(
                t.invites.update()
                .where(
                    t.invites.c.token_hash == digest,
                    t.invites.c.used_at.is_(None),
                    t.invites.c.revoked_at.is_(None),
                    t.invites.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if not spent.rowcount:
                raise _Spent()
            row = (
                await conn.execute(sa.select(t.invites).where(t.invites.c.token_hash == digest))
            ).one()
            result = await conn.execute(
                t.users.insert().values(
                    username=username,
                    password_hash=password_hash,
                    role=row.role,
                    trained=row.trained,
                    active=True,
                    created_at=now,
                )
            )
            user_id = result.inserted_primary_key[0]  # type: ignore[index]
            await conn.execute(
                t.invites.update().where(t.invites.c.id == row.id).values(user_id=user_id)
            )
            await store._audit(
                conn,
                user_id,
                "user.add",
                "user",
                user_id,
                {"role": row.role, "invite": row.id, "invited_by": row.created_by},
            )
    except _Spent:
        raise refusal(await find(store, token)) from None
    except sa.exc.IntegrityError:  # the same name, chosen at the same moment
        raise InviteError("open", "that username is taken; choose another") from None
    return User(
        id=user_id,
        username=username,
        role=Role(row.role),
        trained=row.trained,
        active=True,
    )

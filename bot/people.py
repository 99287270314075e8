"""The team's accounts as coordinators manage them: role, training, active or not.

Two rules keep a team from locking itself out: a coordinator cannot demote or deactivate
themselves (so there is always a coordinator left to undo a mistake). Deactivating an
account ends it everywhere at once: its API tokens are deleted, its console sessions end
(and stay ended if it is reactivated), it goes off duty and its open claims are released.
Every change is in the audit log, with who made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot import schema as t
from bot.models import CaseStatus, Role, User, utcnow
from bot.store import NotFound, Store, StoreError


class PeopleError(StoreError):
    """A change the rules refuse; the message says why, for the coordinator."""


@dataclass(frozen=True)
class Person:
    """An account as the People page lists it."""

    id: int
    username: str
    role: Role
    trained: bool
    active: bool
    on_duty: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Person:
        return cls(
            id=row.id,
            username=row.username,
            role=Role(row.role),
            trained=row.trained,
            active=row.active,
            on_duty=row.on_duty,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role.value,
            "trained": self.trained,
            "active": self.active,
            "on_duty": self.on_duty,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


async def people(store: Store) -> list[Person]:
    """Every account, active ones first, by name."""
    query = sa.select(t.users).order_by(t.users.c.active.desc(), t.users.c.username)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Person.from_row(r) for r in rows]


async def person(store: Store, user_id: int) -> Person:
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.users).where(t.users.c.id == user_id))).first()
    if row is None:
        raise NotFound(f"no account {user_id}")
    return Person.from_row(row)


async def set_role(store: Store, user_id: int, role: Role, *, by: User) -> Person:
    before = await person(store, user_id)
    if user_id == by.id and role is not Role.COORDINATOR:
        raise PeopleError("you cannot take the coordinator role from yourself")
    if before.role is not role:
        async with store.engine.begin() as conn:
            await conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(role=role.value)
            )
            await store._audit(
                conn,
                by.id,
                "user.role",
                "user",
                user_id,
                {"from": before.role.value, "to": role.value},
            )
    return await person(store, user_id)


async def set_trained(store: Store, user_id: int, trained: bool, *, by: User) -> Person:
    """Trained volunteers may claim and answer cases; untrained ones see the queue only."""
    before = await person(store, user_id)
    if before.trained is not trained:
        async with store.engine.begin() as conn:
            await conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(trained=trained)
            )
            await store._audit(conn, by.id, "user.trained", "user", user_id, {"trained": trained})
    return await person(store, user_id)


async def set_active(store: Store, user_id: int, active: bool, *, by: User) -> Person:
    before = await person(store, user_id)
    if user_id == by.id and not active:
        raise PeopleError("you cannot deactivate your own account")
    if before.active is active:
        return before
    now = utcnow()
    async with store.engine.begin() as conn:
        details: dict[str, Any] = {}
        if active:
            await conn.execute(t.users.update().where(t.users.c.id == user_id).values(active=True))
        else:
            await conn.execute(
                t.users.update()
                .where(t.users.c.id == user_id)
                .values(active=False, on_duty=False, sessions_after=now)
            )
            tokens = await conn.execute(
                t.api_tokens.delete().where(t.api_tokens.c.user_id == user_id)
            )
            claims = await conn.execute(
                t.cases.update()
                .where(
                    t.cases.c.claimed_by == user_id,
                    t.cases.c.status == CaseStatus.OPEN.value,
                )
                .values(claimed_by=None, claimed_at=None, claim_active_at=None)
            )
            details = {"tokens": int(tokens.rowcount or 0), "claims": int(claims.rowcount or 0)}
        action = "user.activate" if active else "user.deactivate"
        await store._audit(conn, by.id, action, "user", user_id, details)
    return await person(store, user_id)


async def record_login(store: Store, user_id: int) -> None:
    """A console login succeeded: the People page shows when."""
    async with store.engine.begin() as conn:
        await conn.execute(
            t.users.update().where(t.users.c.id == user_id).values(last_login_at=utcnow())
        )

"""The audit log as coordinators read it: who did what, newest first, filtered and paged.

It reads ``audit_events`` (every approval, claim, dismissal, opt-in and opt-out, lexicon
edit, erasure, purge…) and, as ``faq.revision`` events, ``faq_revisions`` (each FAQ save
is a revision with its author). Nothing is resolved: pseudonyms in the details (who opted a
channel in) stay pseudonyms, and an erasure leaves "erased".
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot import schema as t
from bot.store import Store

PER_PAGE = 50
MAX_PAGE = 1000  # deeper than 50,000 events: narrow the filters instead
SYSTEM = "system"  # the actor of what no account did (the bot, a chat admin, retention)
FAQ_KIND = "faq"
FAQ_OBJECT = "faq_entry"


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str  # a username, or "system"
    action: str  # kind.verb, e.g. reply.approve
    object_type: str
    object_id: str
    details: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.action.split(".", 1)[0]


@dataclass(frozen=True)
class AuditPage:
    entries: tuple[AuditEntry, ...]
    page: int
    has_next: bool


async def audit_filters(store: Store) -> tuple[list[str], list[str]]:
    """The kinds (action prefixes) and object types present, for the filter lists."""
    async with store.engine.connect() as conn:
        actions = (await conn.scalars(sa.select(t.audit_events.c.action).distinct())).all()
        types = (await conn.scalars(sa.select(t.audit_events.c.object_type).distinct())).all()
    kinds = {a.split(".", 1)[0] for a in actions} | {FAQ_KIND}
    return sorted(kinds), sorted(set(types) | {FAQ_OBJECT})


async def audit_log(
    store: Store,
    *,
    kind: str | None = None,
    object_type: str | None = None,
    actor: str | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> AuditPage:
    """One page of the log, newest first. ``kind`` is an action's prefix (``reply``,
    ``channel``, ``faq``…), ``actor`` a username or ``"system"``."""
    page = max(1, min(page, MAX_PAGE))
    wanted = page * per_page + 1  # one more than needed: is there a next page?
    audit, users = t.audit_events, t.users
    events = (
        sa.select(audit, users.c.username)
        .outerjoin(users, users.c.id == audit.c.actor)
        .order_by(audit.c.at.desc(), audit.c.id.desc())
        .limit(wanted)
    )
    if kind:
        events = events.where(audit.c.action.like(f"{_escape(kind)}.%", escape="\\"))
    if object_type:
        events = events.where(audit.c.object_type == object_type)
    if actor == SYSTEM:
        events = events.where(audit.c.actor.is_(None))
    elif actor:
        events = events.where(users.c.username == actor)
    revisions = t.faq_revisions
    faq = (
        sa.select(revisions)
        .order_by(revisions.c.created_at.desc(), revisions.c.id.desc())
        .limit(wanted)
    )
    if actor and actor != SYSTEM:
        faq = faq.where(revisions.c.author == actor)
    with_faq = kind in (None, "", FAQ_KIND) and object_type in (None, "", FAQ_OBJECT)
    with_faq = with_faq and actor != SYSTEM
    async with store.engine.connect() as conn:
        found = [
            AuditEntry(
                at=r.at,
                actor=r.username or SYSTEM,
                action=r.action,
                object_type=r.object_type,
                object_id=r.object_id,
                details=dict(r.details or {}),
            )
            for r in await conn.execute(events)
        ]
        faq_found = []
        if with_faq:
            faq_found = [
                AuditEntry(
                    at=r.created_at,
                    actor=r.author,
                    action="faq.revision",
                    object_type=FAQ_OBJECT,
                    object_id=r.entry_id,
                    details={"revision": r.revision, "status": r.status},
                )
                for r in await conn.execute(faq)
            ]
    merged = list(heapq.merge(found, faq_found, key=lambda e: e.at, reverse=True))
    start = (page - 1) * per_page
    return AuditPage(
        entries=tuple(merged[start : start + per_page]),
        page=page,
        has_next=len(merged) > start + per_page,
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

"""The figures funders ask for, per week: answers given, time to a first answer, cases by
outcome, active volunteers, topics and substances.

Definitions (also on the Reports page and in docs/console.md):

- Weeks run Monday to Sunday (UTC), clipped to the chosen period.
- **Answers given**: replies approved in the week (not those whose delivery failed for
  good). A case's **first answer** counts in the week it was approved.
- **Time to first answer**: from the case's opening (its first flagged message being
  filed, seconds after it arrived) to the approval of its first reply (by its writer, or
  under four-eyes by the second approver; delivery follows within seconds unless the
  platform is down). Median and 90th percentile by the nearest-rank method over the
  first answers given in the week.
- **Cases by outcome**: cases opened in the week, by where they are now: answered, still
  open, expired (purged by retention without an answer), dismissed (per reason).
- **Active volunteers**: accounts that wrote or approved at least one reply that week
  (any role), counted, never named; the period's figure counts each person once.
- **Topics**: the FAQ entries used in the replies approved that week.
- **Substances**: the substances detected in the flagged messages of the cases opened
  that week, one count per case.

Retention (``bot/retention.py``) deletes old cases and leaves an anonymous row per case
in ``case_archive``; these figures read both, so a report over old weeks still counts
them. What the archive cannot say: which of its FAQ entries were used rather than
suggested (so purged cases add nothing to topics) and when each later reply was approved
(a purged case's replies count in the week of its first one). Active volunteers come from
the audit log, which retention keeps. Cases deleted by an opt-out with purge or by
erasure leave nothing and are not counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from bot import schema as t
from bot.models import CaseStatus, DismissReason, ReplyStatus
from bot.store import Store

#: A report covers at most this many days (two years): the page stays quick.
MAX_DAYS = 731
DEFAULT_WEEKS = 4

#: The outcome columns, in display order.
OUTCOMES: tuple[str, ...] = (
    "answered",
    "open",
    "expired",
    *(f"dismissed:{r.value}" for r in DismissReason),
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``q`` % of the values
    at or below it (``q`` = 50 gives the lower median of an even count). None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    """The usual median (the mean of the two middle values of an even count)."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def default_period(today: date) -> tuple[date, date]:
    """The last four weeks: from the Monday three weeks before this week's, to today."""
    return week_start(today) - timedelta(weeks=DEFAULT_WEEKS - 1), today


@dataclass(frozen=True)
class Figures:
    """One week's figures (or the whole period's)."""

    start: date
    end: date  # inclusive
    answers: int = 0
    first_answers: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None
    opened: int = 0
    urgent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    volunteers: int = 0
    substances: dict[str, int] = field(default_factory=dict)
    topics: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    start: date
    end: date
    channel_id: int | None
    language: str | None
    weeks: tuple[Figures, ...]
    total: Figures
    archived_cases: int  # of the cases opened in the period, how many come from the archive

    @property
    def substances(self) -> list[str]:
        """Every substance named in the period, most frequent first."""
        return _ranked(self.total.substances)

    @property
    def topics(self) -> list[str]:
        return _ranked(self.total.topics)


def _ranked(counts: dict[str, int]) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


class _Bucket:
    """Raw observations for one week, turned into :class:`Figures` at the end."""

    def __init__(self, start: date, end: date) -> None:
        self.start, self.end = start, end
        self.answers = 0
        self.delays: list[float] = []
        self.opened = 0
        self.urgent = 0
        self.outcomes: Counter[str] = Counter()
        self.people: set[int] = set()
        self.substances: Counter[str] = Counter()
        self.topics: Counter[str] = Counter()

    def figures(self) -> Figures:
        return Figures(
            start=self.start,
            end=self.end,
            answers=self.answers,
            first_answers=len(self.delays),
            median_seconds=median(self.delays),
            p90_seconds=percentile(self.delays, 90),
            opened=self.opened,
            urgent=self.urgent,
            outcomes={k: self.outcomes[k] for k in OUTCOMES},
            volunteers=len(self.people),
            substances=dict(self.substances),
            topics=dict(self.topics),
        )


def _moment(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _outcome(status: str, dismiss_reason: str | None, *, archived: bool) -> str:
    if status == CaseStatus.DISMISSED.value:
        return f"dismissed:{dismiss_reason or DismissReason.NOT_OUR_JOB.value}"
    if status == CaseStatus.OPEN.value:
        return "expired" if archived else "open"
    return "answered"


async def build_report(
    store: Store,
    start: date,
    end: date,
    *,
    channel_id: int | None = None,
    language: str | None = None,
) -> Report:
    """The figures for ``start``…``end`` (inclusive days, UTC), per week and in total,
    narrowed to one channel and/or one case language when given."""
    if end < start:
        raise ValueError("the period ends before it starts")
    if (end - start).days >= MAX_DAYS:
        raise ValueError(f"a report covers at most {MAX_DAYS} days")
    since, until = _moment(start), _moment(end + timedelta(days=1))
    buckets: list[_Bucket] = []
    day = start
    while day <= end:
        last = min(week_start(day) + timedelta(days=6), end)
        buckets.append(_Bucket(day, last))
        day = last + timedelta(days=1)
    total = _Bucket(start, end)

    def bucket(moment: datetime) -> _Bucket | None:
        if not since <= moment < until:
            return None
        offset = (moment.astimezone(UTC).date() - start).days
        first_end = (buckets[0].end - start).days
        index = 0 if offset <= first_end else 1 + (offset - first_end - 1) // 7
        return buckets[index]

    def add(moment: datetime, what: str, value: Any = 1) -> None:
        found = bucket(moment)
        if found is None:
            return
        for b in (found, total):
            if what == "answers":
                b.answers += value
            elif what == "delay":
                b.delays.append(value)
            elif what == "person":
                b.people.add(value)
            elif what == "topic":
                b.topics[value] += 1
            elif what == "case":
                status, reason, archived, urgent, substances = value
                b.opened += 1
                b.urgent += int(urgent)
                b.outcomes[_outcome(status, reason, archived=archived)] += 1
                b.substances.update(substances)

    def narrowed(query: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        if channel_id is not None:
            query = query.where(table.c.channel_id == channel_id)
        if language is not None:
            query = query.where(table.c.language == language)
        return query

    cases, archive, replies = t.cases, t.case_archive, t.replies
    archived_cases = 0
    async with store.engine.connect() as conn:
        # Cases opened in the period: their outcome and substances.
        opened = narrowed(
            sa.select(
                cases.c.id,
                cases.c.status,
                cases.c.dismiss_reason,
                cases.c.urgent,
                cases.c.created_at,
            ).where(cases.c.created_at >= since, cases.c.created_at < until),
            cases,
        )
        named: dict[int, set[str]] = {}
        ids = opened.with_only_columns(cases.c.id).scalar_subquery()
        for case_id, substances in await conn.execute(
            sa.select(t.messages.c.case_id, t.messages.c.substances).where(
                t.messages.c.case_id.in_(ids), t.messages.c.flagged.is_(True)
            )
        ):
            named.setdefault(case_id, set()).update(substances or ())
        for r in await conn.execute(opened):
            value = (r.status, r.dismiss_reason, False, r.urgent, named.get(r.id, ()))
            add(r.created_at, "case", value)
        for r in await conn.execute(
            narrowed(
                sa.select(archive).where(
                    archive.c.created_at >= since, archive.c.created_at < until
                ),
                archive,
            )
        ):
            archived_cases += 1
            value = (r.status, r.dismiss_reason, True, r.urgent, set(r.substances or ()))
            add(r.created_at, "case", value)

        # Answers approved in the period, and first answers with their delays.
        live = sa.select(replies.c.case_id).join(cases, cases.c.id == replies.c.case_id)
        live = narrowed(live, cases).where(replies.c.status != ReplyStatus.FAILED.value)
        for r in await conn.execute(
            live.add_columns(replies.c.entry_id, replies.c.approved_at).where(
                replies.c.approved_at >= since, replies.c.approved_at < until
            )
        ):
            add(r.approved_at, "answers")
            if r.entry_id:
                add(r.approved_at, "topic", r.entry_id)
        first = (
            live.add_columns(
                cases.c.created_at, sa.func.min(replies.c.approved_at).label("first_at")
            )
            .group_by(replies.c.case_id, cases.c.created_at)
            .subquery()
        )
        for r in await conn.execute(
            sa.select(first).where(first.c.first_at >= since, first.c.first_at < until)
        ):
            add(r.first_at, "delay", (r.first_at - r.created_at).total_seconds())
        for r in await conn.execute(
            narrowed(
                sa.select(archive.c.replies, archive.c.created_at, archive.c.first_reply_at).where(
                    archive.c.first_reply_at >= since, archive.c.first_reply_at < until
                ),
                archive,
            )
        ):
            add(r.first_reply_at, "answers", r.replies)
            add(r.first_reply_at, "delay", (r.first_reply_at - r.created_at).total_seconds())

        # Who answered, from the audit log (kept by retention): writers and approvers.
        audit = t.audit_events
        approvals = (
            await conn.execute(
                sa.select(audit.c.at, audit.c.actor, audit.c.details).where(
                    audit.c.action == "reply.approve",
                    audit.c.at >= since,
                    audit.c.at < until,
                )
            )
        ).all()
        allowed = None
        if channel_id is not None or language is not None:
            allowed = await _case_ids(
                conn, narrowed, _audit_cases(approvals), cases=cases, archive=archive
            )
        for r in approvals:
            details = r.details or {}
            case_id = details.get("case")
            if allowed is not None and case_id not in allowed:
                continue
            for person in (r.actor, details.get("written_by")):
                if isinstance(person, int):
                    add(r.at, "person", person)

    return Report(
        start=start,
        end=end,
        channel_id=channel_id,
        language=language,
        weeks=tuple(b.figures() for b in buckets),
        total=total.figures(),
        archived_cases=archived_cases,
    )


def _audit_cases(rows: Iterable[Any]) -> set[int]:
    found = set()
    for r in rows:
        case_id = (r.details or {}).get("case")
        if isinstance(case_id, int):
            found.add(case_id)
    return found


async def _case_ids(
    conn: Any, narrowed: Any, candidates: set[int], *, cases: sa.Table, archive: sa.Table
) -> set[int]:
    """Which of ``candidates`` (case ids) fall within the report's channel and language,
    live or archived."""
    if not candidates:
        return set()
    found: set[int] = set()
    ids = sorted(candidates)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        found.update(
            (
                await conn.scalars(
                    narrowed(sa.select(cases.c.id), cases).where(cases.c.id.in_(chunk))
                )
            ).all()
        )
        found.update(
            (
                await conn.scalars(
                    narrowed(sa.select(archive.c.case_id), archive).where(
                        archive.c.case_id.in_(chunk)
                    )
                )
            ).all()
        )
    return found

"""Early signals: substances and topics people mention markedly more often in recent weeks,
across channels; what prevention bodies want to see early.

The rule (shown on the Signals page, in docs/console.md):

- A *mention* is a case (a conversation a flagged message opened) naming the substance,
  or whose best-matching FAQ entry is the topic; a case counts once however many of its
  messages name it, so one talkative person does not make a trend.
- The *recent* window is the last :data:`RECENT_WEEKS` weeks (14 days up to now); the
  *baseline* the :data:`BASELINE_WEEKS` weeks before it.
- A substance or topic is a signal when, in the recent window, it was mentioned at least
  :data:`MIN_COUNT` times, its weekly rate is at least :data:`MIN_RATIO` times the
  baseline's weekly mean (or it was not mentioned at all in the baseline), and the
  mentions came from at least :data:`MIN_CHANNELS` different channels.

Everything is aggregate and anonymous: counts only, no text, no author, no channel name;
how many channels, never which. Rises seen in fewer channels are only counted. Cases
purged by retention are read from the anonymous ``case_archive``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from bot import schema as t
from bot.models import utcnow
from bot.store import Store

RECENT_WEEKS = 2
BASELINE_WEEKS = 8
MIN_COUNT = 5
MIN_RATIO = 2.0
MIN_CHANNELS = 3

Kind = Literal["substance", "topic"]


@dataclass(frozen=True)
class Rule:
    recent_weeks: int = RECENT_WEEKS
    baseline_weeks: int = BASELINE_WEEKS
    min_count: int = MIN_COUNT
    min_ratio: float = MIN_RATIO
    min_channels: int = MIN_CHANNELS


@dataclass(frozen=True)
class Signal:
    kind: Kind
    name: str
    recent: int  # mentions in the recent window
    baseline: int  # mentions in the baseline window
    channels: int  # different channels the recent mentions came from
    weekly: tuple[int, ...]  # mentions per week, oldest first (baseline, then recent)
    rule: Rule

    @property
    def recent_rate(self) -> float:
        return self.recent / self.rule.recent_weeks

    @property
    def baseline_rate(self) -> float:
        return self.baseline / self.rule.baseline_weeks

    @property
    def ratio(self) -> float | None:
        """How many times the baseline's weekly mean; None when the baseline had none."""
        return self.recent_rate / self.baseline_rate if self.baseline else None


@dataclass(frozen=True)
class Signals:
    now: datetime
    rule: Rule
    signals: tuple[Signal, ...]
    #: rises that met the count and the ratio but came from fewer channels than the rule
    #: asks: only counted, never named
    narrow: int
    #: the starts of the weeks in :attr:`Signal.weekly`, oldest first
    weeks: tuple[datetime, ...]


def _is_rise(recent: int, baseline: int, rule: Rule) -> bool:
    if recent < rule.min_count:
        return False
    if baseline == 0:
        return True
    return recent / rule.recent_weeks >= rule.min_ratio * baseline / rule.baseline_weeks


async def find_signals(
    store: Store, *, now: datetime | None = None, rule: Rule = Rule()
) -> Signals:
    """The substances and topics whose mentions rose by the rule, strongest rise first."""
    now = now or utcnow()
    weeks = rule.baseline_weeks + rule.recent_weeks
    since = now - timedelta(weeks=weeks)
    starts = tuple(since + timedelta(weeks=i) for i in range(weeks))
    # (kind, name) -> counts per week, and the channels of the recent mentions
    counts: dict[tuple[Kind, str], list[int]] = {}
    channels: dict[tuple[Kind, str], set[Any]] = {}

    def mention(kind: Kind, names: Iterable[str], at: datetime, channel: Any) -> None:
        week = int((at - since) / timedelta(weeks=1))
        if not 0 <= week < weeks:
            return
        for name in set(names):
            key = (kind, name)
            counts.setdefault(key, [0] * weeks)[week] += 1
            if week >= rule.baseline_weeks:
                channels.setdefault(key, set()).add(channel)

    cases, archive = t.cases, t.case_archive
    async with store.engine.connect() as conn:
        recent_cases = sa.select(cases.c.id).where(cases.c.created_at >= since)
        named: dict[int, set[str]] = {}
        for case_id, substances in await conn.execute(
            sa.select(t.messages.c.case_id, t.messages.c.substances).where(
                t.messages.c.case_id.in_(recent_cases.scalar_subquery()),
                t.messages.c.flagged.is_(True),
            )
        ):
            named.setdefault(case_id, set()).update(substances or ())
        top: dict[int, str] = {}
        for case_id, entry_id in await conn.execute(
            sa.select(t.suggestions.c.case_id, t.suggestions.c.entry_id)
            .where(t.suggestions.c.case_id.in_(recent_cases.scalar_subquery()))
            .order_by(t.suggestions.c.case_id, t.suggestions.c.rank.desc())
        ):
            top[case_id] = entry_id  # the best rank comes last and stays
        for case_id, channel_id, created_at in await conn.execute(
            sa.select(cases.c.id, cases.c.channel_id, cases.c.created_at).where(
                cases.c.created_at >= since
            )
        ):
            mention("substance", named.get(case_id, ()), created_at, channel_id)
            if case_id in top:
                mention("topic", [top[case_id]], created_at, channel_id)
        for a in await conn.execute(
            sa.select(
                archive.c.channel_id,
                archive.c.platform,
                archive.c.substances,
                archive.c.topics,
                archive.c.created_at,
            ).where(archive.c.created_at >= since)
        ):
            mention("substance", a.substances or (), a.created_at, a.channel_id)
            # The archive lists the suggestions best first (then entries used in replies).
            if a.topics:
                mention("topic", [a.topics[0]], a.created_at, a.channel_id)

    found = []
    narrow = 0
    for (kind, name), weekly in counts.items():
        baseline = sum(weekly[: rule.baseline_weeks])
        recent = sum(weekly[rule.baseline_weeks :])
        if not _is_rise(recent, baseline, rule):
            continue
        spread = len(channels.get((kind, name), set()) - {None})
        if spread < rule.min_channels:
            narrow += 1
            continue
        found.append(
            Signal(
                kind=kind,
                name=name,
                recent=recent,
                baseline=baseline,
                channels=spread,
                weekly=tuple(weekly),
                rule=rule,
            )
        )
    found.sort(key=lambda s: (s.ratio is not None, -(s.ratio or 0.0), -s.recent, s.name))
    return Signals(now=now, rule=rule, signals=tuple(found), narrow=narrow, weeks=starts)

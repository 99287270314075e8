"""Retention: what people wrote is kept only as long as the settings say.

``privacy.retention_unanswered_days`` (30) for everything that did not lead to an answer,
``privacy.retention_answered_days`` (180) for answered cases, counted from their last
activity. A coordinator may give a channel shorter periods of its own (console Channels
page, bot/channel_admin.py); never longer ones. `peerdesk purge` runs it once; a running
peerdesk runs it every hour.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot import channel_admin
from bot.models import utcnow
from bot.settings import Settings
from bot.store import Store

logger = logging.getLogger(__name__)

EVERY = timedelta(hours=1)


async def purge(store: Store, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Delete what is past retention; returns how many cases and messages went."""
    now = now or utcnow()
    privacy = settings.privacy
    unanswered = privacy.retention_unanswered_days
    answered = privacy.retention_answered_days
    own = await channel_admin.retention_overrides(store)
    counts = await store.purge(
        unanswered_before=now - timedelta(days=unanswered),
        answered_before=now - timedelta(days=answered),
        other_than=sorted(own),
    )
    # Channels with their own periods, grouped so that each pair of periods is one pass.
    # A period longer than the setting (the setting went down since) counts as the setting.
    groups: dict[tuple[int, int], list[int]] = {}
    for channel_id, (own_unanswered, own_answered) in own.items():
        days = (
            min(own_unanswered or unanswered, unanswered),
            min(own_answered or answered, answered),
        )
        groups.setdefault(days, []).append(channel_id)
    for (days_unanswered, days_answered), ids in sorted(groups.items()):
        more = await store.purge(
            unanswered_before=now - timedelta(days=days_unanswered),
            answered_before=now - timedelta(days=days_answered),
            channels=sorted(ids),
        )
        counts = {key: counts[key] + more[key] for key in counts}
    if counts["cases"] or counts["messages"]:
        logger.info(
            "retention: purged %d cases and %d messages", counts["cases"], counts["messages"]
        )
    return counts

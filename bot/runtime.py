"""Everything a running peerdesk holds, built and closed in one place.

The runner, the console and the CLI receive a :class:`Runtime` explicitly; nothing lives
in module globals.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from bot import retention, sessions
from bot.adapter import Adapter
from bot.demo_adapter import DemoAdapter
from bot.events import (
    Broadcaster,
    CaseEvent,
    CaseEventKind,
    LocalBroadcaster,
    PostgresBroadcaster,
)
from bot.faq import FAQ
from bot.feedback import LiveDetector
from bot.leader import Leader
from bot.models import utcnow
from bot.outbox import OutboxWorker
from bot.pipeline import Pipeline
from bot.private_alerts import PrivateAlerts
from bot.pseudonym import Pseudonymizer
from bot.settings import Settings
from bot.store import Store, StoreError
from knowledge_base.embedder import make_embedder
from prompts import Prompts

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    faq: FAQ
    detector: LiveDetector
    pipeline: Pipeline
    outbox: OutboxWorker
    session_key: str = field(repr=False)
    adapters: dict[str, Adapter] = field(default_factory=dict)
    demo: DemoAdapter | None = None
    started_at: datetime = field(default_factory=utcnow)
    events: Broadcaster = field(default_factory=LocalBroadcaster)
    # Runs the shared jobs on one instance only (an advisory lock on PostgreSQL).
    leader: Leader = field(default_factory=lambda: Leader(None))
    # Urgent unclaimed cases and when the volunteers on duty were last alerted (by this
    # instance, which keeps the shared jobs while it holds the lock).
    alerted: dict[int, datetime] = field(default_factory=dict)
    # When this instance last ran the retention purge (hourly).
    last_purge: datetime | None = None
    # What runs in a lesser mode, and why (the embedding model did not load, say): shown by
    # /healthz and at the top of every console page until it is fixed.
    degraded: list[str] = field(default_factory=list)
    # Platforms configured but run by another process (a `peerdesk console` beside a
    # `peerdesk bot`): /healthz says so instead of "connecting".
    elsewhere: set[str] = field(default_factory=set)
    # Urgent alerts by private message to volunteers' own accounts (bot.private_alerts).
    alerts: PrivateAlerts | None = None

    async def maintain(self, *, shared: bool = True) -> None:
        """Housekeeping that runs at start and then every minute. Once across instances
        (on the one holding the lock, among those with ``shared``): messages stored but
        not processed (a failure in between) are processed; FAQ entries past their
        review-by date expire and leave the suggestions; lapsed claims are released and
        urgent cases re-alerted; every hour, what is past retention is purged. On every
        instance, for itself: FAQ changes made elsewhere reach its index, and lexicon edits
        and retrained models reach its detection."""
        if shared and await self.leader.acquire():
            await self.shared_jobs()
        # Edits made through another instance (or an import) reach this one's index too.
        await self.faq.refresh_if_changed()
        # Lexicon edits and retrained models, wherever they were made.
        await self.detector.refresh(self.store)

    async def shared_jobs(self) -> None:
        """The jobs that act on shared data and must not run on two instances at once."""
        await self.pipeline.recover()
        expired = await self.store.expire_faq_entries(utcnow().date())
        if expired:
            logger.info("FAQ entries expired (review date passed): %s", ", ".join(expired))
        await self.check_claims()
        # Retention, hourly: what people wrote is not kept past privacy.retention_*_days.
        now = utcnow()
        if self.last_purge is None or now - self.last_purge >= retention.EVERY:
            self.last_purge = now
            await retention.purge(self.store, self.settings, now=now)
            await sessions.forget_expired(self.store)  # cookies that expired anyway

    def claim_lapsed_before(self) -> datetime:
        """Claims whose holder has not acted since then no longer hold."""
        return utcnow() - timedelta(minutes=self.settings.console.claim_minutes)

    async def check_claims(self) -> None:
        """Release lapsed claims, and alert the volunteers on duty again about urgent
        cases nobody has claimed for ``console.alert_minutes``."""
        for case_id in await self.store.release_lapsed_claims(self.claim_lapsed_before()):
            self.events.publish(CaseEvent(CaseEventKind.CLAIMED, case_id))
        now = utcnow()
        every = timedelta(minutes=self.settings.console.alert_minutes)
        unclaimed = await self.store.unclaimed_urgent_cases()
        for case_id in set(self.alerted) - set(unclaimed):
            del self.alerted[case_id]
        for case_id, opened in unclaimed.items():
            if now - self.alerted.get(case_id, opened) >= every:
                self.alerted[case_id] = now
                self.events.publish(CaseEvent(CaseEventKind.ALERT, case_id, urgent=True))
        if self.alerts is not None and unclaimed:
            # One alert a round per case and volunteer, whichever instance queues it.
            await self.alerts.alert_all(sorted(unclaimed), now=now)

    async def close(self) -> None:
        self.events.close()
        await self.events.stop()
        await self.leader.release()
        await self.store.close()


def suggest_statuses(settings: Settings, *, demo: bool) -> tuple[str, ...]:
    statuses = tuple(settings.knowledge_base.suggest_statuses)
    if demo and settings.demo.suggest_in_review and "in_review" not in statuses:
        statuses += ("in_review",)
    return statuses


def make_faq(store: Store, settings: Settings, *, demo: bool = False) -> FAQ:
    """The FAQ with the configured embedder and search mode (weights load lazily)."""
    kb = settings.knowledge_base
    return FAQ(
        store,
        suggest_statuses=suggest_statuses(settings, demo=demo),
        embedder=make_embedder(kb.embedder),
        mode=kb.search_mode,
        lexical_weight=kb.lexical_weight,
        min_score=kb.min_score,
    )


async def faq_with_fallback(
    store: Store, settings: Settings, *, demo: bool = False
) -> tuple[FAQ, list[str]]:
    """The FAQ with its embedding model loaded now, when search or detection needs it. A
    model that cannot be loaded (a missing or broken folder, a package gone) does not stop
    peerdesk: search falls back to words and detection to the lexicon, the log says so,
    and the reason is returned for /healthz and the console."""
    kb = settings.knowledge_base
    try:
        faq = make_faq(store, settings, demo=demo)
        if faq.embedder is not None and (
            kb.search_mode != "lexical" or settings.detection.mode != "lexicon"
        ):
            await asyncio.to_thread(faq.embedder.load)
        return faq, []
    except Exception as exc:
        reason = f"the embedding model {kb.embedder!r} could not be loaded ({exc})"
        logger.error(
            "%s: FAQ suggestions match words only and detection uses the lexicon alone "
            "until it is fixed",
            reason,
        )
        without = replace(settings, knowledge_base=replace(kb, embedder="none"))
        return make_faq(store, without, demo=demo), [reason]


async def open_store(settings: Settings, *, migrate_schema: bool = True) -> Store:
    """Open and migrate the store; an unreachable database raises :class:`StoreError`
    naming it (without its password)."""
    store = Store(settings.database.url)
    try:
        await store.initialize(migrate_schema=migrate_schema)
    except (OSError, sa_exc.DBAPIError) as exc:
        await store.close()
        where = make_url(settings.database.url).render_as_string(hide_password=True)
        reason = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        raise StoreError(f"database {where}: {reason}") from exc
    except BaseException:
        await store.close()
        raise
    return store


async def seed_faq(faq: FAQ, settings: Settings) -> int:
    """Import the configured FAQ folder when the store has no FAQ yet. Returns how many."""
    if await faq.store.faq_count():
        return 0
    folder = (
        Path(settings.knowledge_base.content_dir) if settings.knowledge_base.content_dir else None
    )
    return await faq.import_dir(folder, author="seed")


async def platform_adapters(store: Store, settings: Settings) -> dict[str, Adapter]:
    """The chat platforms that have a token. Each library is imported only when used."""
    adapters: dict[str, Adapter] = {}
    if settings.telegram.token:
        from bot.telegram_adapter import TelegramAdapter

        secret = settings.telegram.webhook_secret.get() or await store.get_or_create_secret(
            "telegram_webhook"
        )
        adapters["telegram"] = TelegramAdapter(settings.telegram, webhook_secret=secret)
    if settings.discord.token:
        from bot.discord_adapter import DiscordAdapter

        adapters["discord"] = DiscordAdapter(settings.discord)
    return adapters


def plain_dsn(store: Store) -> str | None:
    """The PostgreSQL database as an asyncpg DSN, for connections of our own (LISTEN,
    advisory locks); None on SQLite."""
    if store.is_sqlite:
        return None
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def make_broadcaster(store: Store) -> Broadcaster:
    """In-process on SQLite (one process); LISTEN/NOTIFY on PostgreSQL, so that the
    consoles of every instance sharing the database hear every instance's events."""
    dsn = plain_dsn(store)
    return LocalBroadcaster() if dsn is None else PostgresBroadcaster(dsn)


async def build_runtime(settings: Settings, *, demo: bool = False) -> Runtime:
    """Open the store (migrating it), load secrets, the FAQ and the detector."""
    store = await open_store(settings)
    events: Broadcaster | None = None
    try:
        session_key = settings.console.secret_key.get() or await store.get_or_create_secret(
            "console_session"
        )
        pseudonym_key = settings.privacy.pseudonym_key.get() or await store.get_or_create_secret(
            "pseudonym"
        )
        faq, degraded = await faq_with_fallback(store, settings, demo=demo)
        await seed_faq(faq, settings)
        await faq.refresh()
        detector = LiveDetector(settings, faq.embedder, faq=faq.questions)
        await detector.refresh(store)
        events = make_broadcaster(store)
        await events.start()
        alerts = PrivateAlerts(store, settings, Prompts())
        pipeline = Pipeline(
            alerts=alerts,
            events=events,
            store=store,
            detector=detector,
            faq=faq,
            pseudonymize=Pseudonymizer(pseudonym_key),
            prompts=Prompts(),
            settings=settings,
        )
        adapters: dict[str, Adapter] = {}
        demo_adapter = None
        if demo:
            demo_adapter = DemoAdapter(
                transcript_path=Path(settings.demo.transcript_path),
                interval_seconds=settings.demo.interval_seconds,
            )
            adapters[demo_adapter.platform] = demo_adapter
        adapters.update(await platform_adapters(store, settings))
        outbox = OutboxWorker(store, adapters, settings.outbox)
        alerts.wake = outbox.wakeup.set
    except BaseException:
        if events is not None:
            await events.stop()
        await store.close()
        raise
    return Runtime(
        settings=settings,
        store=store,
        faq=faq,
        detector=detector,
        pipeline=pipeline,
        outbox=outbox,
        session_key=session_key,
        adapters=adapters,
        demo=demo_adapter,
        events=events,
        leader=Leader(plain_dsn(store)),
        degraded=degraded,
        alerts=alerts,
    )

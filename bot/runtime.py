"""Everything a running peerdesk holds, built and closed in one place.

The runner, the console and the CLI receive a :class:`Runtime` explicitly; nothing lives
in module globals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from bot.adapter import Adapter
from bot.classifier import make_detector
from bot.demo_adapter import DemoAdapter
from bot.detector import MessageDetector
from bot.faq import FAQ
from bot.models import utcnow
from bot.outbox import OutboxWorker
from bot.pipeline import Pipeline
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
    detector: MessageDetector
    pipeline: Pipeline
    outbox: OutboxWorker
    session_key: str = field(repr=False)
    adapters: dict[str, Adapter] = field(default_factory=dict)
    demo: DemoAdapter | None = None
    started_at: datetime = field(default_factory=utcnow)

    async def maintain(self) -> None:
        """Housekeeping that runs at start and then every minute: messages stored but not
        processed (a failure in between) are processed; FAQ entries past their review-by
        date expire and leave the suggestions; FAQ changes made elsewhere reach the index."""
        await self.pipeline.recover()
        expired = await self.store.expire_faq_entries(utcnow().date())
        if expired:
            logger.info("FAQ entries expired (review date passed): %s", ", ".join(expired))
        # Edits made through another instance (or an import) reach this one's index too.
        await self.faq.refresh_if_changed()

    async def close(self) -> None:
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


async def build_runtime(settings: Settings, *, demo: bool = False) -> Runtime:
    """Open the store (migrating it), load secrets, the FAQ and the detector."""
    store = await open_store(settings)
    try:
        session_key = settings.console.secret_key.get() or await store.get_or_create_secret(
            "console_session"
        )
        pseudonym_key = settings.privacy.pseudonym_key.get() or await store.get_or_create_secret(
            "pseudonym"
        )
        faq = make_faq(store, settings, demo=demo)
        await seed_faq(faq, settings)
        await faq.refresh()
        detector = make_detector(settings, faq.embedder)
        pipeline = Pipeline(
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
    except BaseException:
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
    )

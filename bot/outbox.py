"""The outbox worker: delivers approved replies and fixed notices, once, whatever happens.

Rows are written in the same transaction as the approval. The worker leases due rows,
hands them to the platform's adapter, and marks them sent with the platform's message id.
A text longer than the platform allows goes out in parts; each part delivered is recorded,
so a retry continues after it.
Outages and rate limits are retried until the platform is back; a delivery whose worker
died mid-way is retried when its lease runs out, under the same key so that an adapter
able to recognise a repeat does not post twice. A row is leased again just before it is
sent, so a worker that fell behind never sends what another worker took over.
A rate limit holds back every message to that chat, not only the one refused, until the
platform's ``retry_after`` has passed (Telegram's flood control is per chat).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from bot import private_alerts
from bot.adapter import (
    Adapter,
    PermanentDeliveryError,
    PlatformUnavailable,
    RateLimited,
    RecipientUnreachable,
)
from bot.failures import FailureStreak
from bot.models import OutgoingMessage, Visibility, utcnow
from bot.settings import OutboxSettings
from bot.splitting import split_text
from bot.store import Delivery, Store

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 600.0


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        adapters: Mapping[str, Adapter],
        settings: OutboxSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.adapters = adapters
        self.settings = settings
        self.clock = clock
        self.wakeup = asyncio.Event()
        # (platform, chat) -> when the platform allows messages to that chat again.
        self._rate_limited: dict[tuple[str, str], datetime] = {}

    def _backoff(self, attempts: int) -> float:
        return float(
            min(self.settings.retry_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
        )

    async def run_once(self) -> int:
        """Deliver what is due now. Returns how many deliveries were attempted."""
        deliveries = await self.store.claim_deliveries(
            now=self.clock(), lease=timedelta(seconds=self.settings.lease_seconds)
        )
        for delivery in deliveries:
            await self._deliver(delivery)
        return len(deliveries)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; :attr:`wakeup` skips the wait after an approval."""
        streak = FailureStreak(logger, "outbox pass")
        while not stop.is_set():
            pause = self.settings.poll_seconds
            try:
                attempted = await self.run_once()
                streak.succeeded()
            except Exception:  # the store is down: keep the worker alive and try again
                pause = streak.failed(self.settings.poll_seconds)
                attempted = 0
            if attempted:
                continue
            self.wakeup.clear()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wakeup.wait())]
            _, pending = await asyncio.wait(
                waits, timeout=pause, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

    async def _deliver(self, delivery: Delivery) -> None:
        item = delivery.item
        adapter = self.adapters.get(delivery.channel.platform)
        now = self.clock()
        if adapter is None:
            error = f"no running adapter for platform {delivery.channel.platform!r}"
            await self.store.mark_retry(
                item.id, error=error, next_attempt_at=now + timedelta(seconds=self._backoff(1))
            )
            return
        if item.visibility is Visibility.PRIVATE:
            refusal: str | None
            if delivery.recipient is None:
                refusal = (
                    "the volunteer unlinked this account"
                    if item.alert_link_id is not None
                    else "no private address is kept for this person"
                )
            else:
                refusal = adapter.private_refusal(delivery.direct_ok)
            if refusal:
                await self.store.mark_failed(item.id, error=refusal)
                return
        parts = split_text(adapter.escape(item.text), adapter.max_text_chars)
        if not parts:
            await self.store.mark_failed(item.id, error="nothing to send: the text is empty")
            return
        target = (
            delivery.channel.platform,
            (delivery.recipient if item.visibility is Visibility.PRIVATE else None)
            or delivery.channel.chat_id,
        )
        until = self._rate_limited.get(target)
        if until is not None and until > now:
            await self.store.mark_retry(
                item.id, error="rate limited: waiting for the platform", next_attempt_at=until
            )
            return
        self._rate_limited.pop(target, None)
        # Claimed with others, this row may have waited past its lease (slow sends before
        # it) and been taken by another worker: send it only if it is still ours.
        lease = timedelta(seconds=self.settings.lease_seconds)
        if not await self.store.renew_lease(item.id, attempts=item.attempts, until=now + lease):
            logger.warning("outbox %s was taken over by another worker; not sending", item.id)
            return
        done = list(item.part_ids)
        try:
            for index in range(len(done), len(parts)):
                message = OutgoingMessage(
                    key=f"outbox-{item.id}" if len(parts) == 1 else f"outbox-{item.id}-{index + 1}",
                    channel=delivery.channel,
                    text=parts[index],
                    visibility=item.visibility,
                    # Only the first part answers the message; the rest follow it.
                    reply_to_message_id=item.reply_to_message_id if index == 0 else None,
                    recipient_id=delivery.recipient,
                )
                done.append(await adapter.send(message))
                if len(parts) > 1:
                    await self.store.record_part(item.id, done)
        except RateLimited as exc:
            logger.warning("outbox %s rate limited for %.1fs", item.id, exc.retry_after)
            # Counted from the answer, not from when the send began.
            until = self.clock() + timedelta(seconds=exc.retry_after)
            self._rate_limited[target] = until
            await self.store.mark_retry(
                item.id, error=f"rate limited: {exc}", next_attempt_at=until
            )
        except PlatformUnavailable as exc:
            delay = self._backoff(item.attempts)
            logger.warning("outbox %s: platform unavailable, retry in %.0fs", item.id, delay)
            await self.store.mark_retry(
                item.id,
                error=f"platform unavailable: {exc}",
                next_attempt_at=now + timedelta(seconds=delay),
            )
        except RecipientUnreachable as exc:
            logger.error("outbox %s: the recipient cannot be written to privately", item.id)
            await self.store.mark_failed(item.id, error=str(exc))
            if item.recipient is not None:
                await self.store.set_direct_ok(item.recipient, False)
            if item.alert_link_id is not None:
                await private_alerts.mark_unreachable(self.store, item.alert_link_id)
        except PermanentDeliveryError as exc:
            logger.error("outbox %s cannot be delivered: %s", item.id, exc)
            await self.store.mark_failed(item.id, error=str(exc))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if item.attempts >= self.settings.max_attempts:
                logger.exception("outbox %s failed for good", item.id)
                await self.store.mark_failed(item.id, error=error)
            else:
                logger.exception("outbox %s failed, will retry", item.id)
                await self.store.mark_retry(
                    item.id,
                    error=error,
                    next_attempt_at=now + timedelta(seconds=self._backoff(item.attempts)),
                )
        else:
            await self.store.mark_sent(item.id, platform_message_id=done[0], at=self.clock())

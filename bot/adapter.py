"""The platform adapter seam: what every chat platform (and the demo) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Protocol

from bot.models import IncomingMessage, OptIn, OutgoingMessage

if TYPE_CHECKING:
    from bot.pipeline import IngestResult


class Inbox(Protocol):
    """Where adapters hand what they receive. Implemented by the pipeline."""

    async def ingest(self, message: IncomingMessage) -> IngestResult | None: ...

    async def opt_in(self, request: OptIn) -> None: ...


class DeliveryError(Exception):
    """Sending failed; the outbox decides whether to retry."""


class PlatformUnavailable(DeliveryError):
    """The platform cannot be reached now (outage, network). Retried until it comes back."""


class RateLimited(PlatformUnavailable):
    """The platform asked us to slow down for ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The message can never be delivered (chat gone, bot removed or blocked)."""


class Adapter(ABC):
    """One chat platform. ``__init__`` does no I/O; ``start``/``stop`` come in pairs."""

    platform: str

    @abstractmethod
    async def start(self, inbox: Inbox) -> None:
        """Connect and begin handing messages to ``inbox``; return once running."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending work of the adapter itself is finished or dropped safely."""

    @abstractmethod
    async def send(self, message: OutgoingMessage) -> str:
        """Deliver ``message`` and return the platform's id for it.

        Raise :class:`PlatformUnavailable` / :class:`RateLimited` for transient trouble and
        :class:`PermanentDeliveryError` when retrying cannot help.
        """

    def can_send_private(self) -> bool:
        """Whether this platform lets the bot message a person directly."""
        return False

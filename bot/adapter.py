"""The platform adapter seam: what every chat platform (and the demo) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from bot.models import (
    ChannelRef,
    IncomingMessage,
    MessageDeletion,
    MessageEdit,
    OptIn,
    OptOut,
    OutgoingMessage,
)

if TYPE_CHECKING:
    from bot.pipeline import IngestResult


class Inbox(Protocol):
    """Where adapters hand what they receive. Implemented by the pipeline.

    Every method raises when the store cannot take the event; an adapter must then not
    acknowledge it to the platform, so that it comes again.
    """

    async def ingest(self, message: IncomingMessage) -> IngestResult | None: ...

    async def opt_in(self, request: OptIn) -> bool: ...

    async def opt_out(self, request: OptOut) -> bool: ...

    async def edit(self, edit: MessageEdit) -> bool: ...

    async def delete(self, deletion: MessageDeletion) -> bool: ...

    async def move_channel(self, platform: str, old_chat_id: str, new_chat_id: str) -> None: ...

    async def reachable(self, platform: str, user_id: str) -> None: ...

    async def export_person(self, platform: str, user_id: str) -> dict[str, Any]: ...

    async def erase_person(self, platform: str, user_id: str) -> dict[str, int]: ...

    async def watched_channels(self, platform: str) -> list[tuple[ChannelRef, str | None]]: ...

    async def link_account(
        self, platform: str, user_id: str, code: str, *, private: bool = True
    ) -> str: ...

    async def unlink_account(self, platform: str, user_id: str) -> str: ...

    def text(self, name: str, language: str | None, **context: Any) -> str: ...


class AdapterStartError(Exception):
    """A platform connection cannot start (bad token, bad settings); says why, never
    showing a secret."""


WebhookHandler = Callable[[Mapping[str, str], bytes], Awaitable[int]]


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


class RecipientUnreachable(PermanentDeliveryError):
    """The platform will not let the bot write to this person privately."""


class Adapter(ABC):
    """One chat platform. ``__init__`` does no I/O; ``start``/``stop`` come in pairs."""

    platform: str
    # The longest text one platform message may hold; longer texts are split.
    max_text_chars: int = 4000

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

    def state(self) -> str:
        """One word for operators (shown by /healthz): connected, connecting..."""
        return "running"

    def webhooks(self) -> list[tuple[str, WebhookHandler]]:
        """HTTP routes the console must serve for this platform: (path, handler). The
        handler gets the request headers (lower-case names) and body, and returns the
        status code to answer with."""
        return []

    def escape(self, text: str) -> str:
        """``text`` made safe to post verbatim: no markup, no mass mentions."""
        return text

    def private_refusal(self, direct_ok: bool | None) -> str | None:
        """Why a private message to a person cannot be sent, or None if it can.

        ``direct_ok`` is what is known of the person: True once they wrote to the bot
        directly, False once the platform refused a private message, None otherwise.
        """
        return "private messages are not possible on this platform"

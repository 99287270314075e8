"""Domain objects: frozen, typed dataclasses passed between the parts of the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    VOLUNTEER = "volunteer"
    EXPERT = "expert"
    COORDINATOR = "coordinator"


class CaseStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    DISMISSED = "dismissed"


class DismissReason(StrEnum):
    """Why a volunteer dismissed a case; each teaches detection something."""

    NOT_DRUG_RELATED = "not_drug_related"
    NOT_OUR_JOB = "not_our_job"
    SPAM = "spam"
    ALREADY_ANSWERED = "already_answered"


# What a case's outcome says about its flagged messages, for retraining: drug-related
# (True), not (False), or nothing usable (None: drug-related or not, it is not ours).
DISMISS_LABELS: dict[DismissReason, bool | None] = {
    DismissReason.NOT_DRUG_RELATED: False,
    DismissReason.SPAM: False,
    DismissReason.ALREADY_ANSWERED: True,
    DismissReason.NOT_OUR_JOB: None,
}


class Visibility(StrEnum):
    PUBLIC = "public"  # a reply to the original message, in the channel
    PRIVATE = "private"  # a direct message to the author


class ReplyStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class ChannelRef:
    """A chat on a platform, as an adapter knows it."""

    platform: str
    chat_id: str
    title: str
    kind: str = "group"  # group | direct | server (a whole Discord server's opt-in)
    language: str | None = None
    # The server a channel belongs to (a Discord guild), so a server-wide opt-in covers it.
    server_id: str | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """One chat message as an adapter hands it to the pipeline. Text is untrusted."""

    channel: ChannelRef
    message_id: str
    author_id: str
    author_name: str
    text: str
    sent_at: datetime
    reply_to_message_id: str | None = None


@dataclass(frozen=True)
class OptIn:
    """A channel admin asked the bot to watch a channel."""

    channel: ChannelRef
    admin_id: str
    admin_name: str
    at: datetime


@dataclass(frozen=True)
class OptOut:
    """A channel admin asked the bot to stop watching a channel."""

    channel: ChannelRef
    admin_id: str
    at: datetime
    notify: bool = True  # False when the bot can no longer write there (it was removed)


@dataclass(frozen=True)
class MessageEdit:
    """The author changed a message the bot may have stored."""

    channel: ChannelRef
    message_id: str
    text: str
    author_id: str | None = None  # kept as a contact if the edit puts the message in a case


@dataclass(frozen=True)
class MessageDeletion:
    """A message was deleted on the platform; its text must go from the case."""

    channel: ChannelRef
    message_id: str


@dataclass(frozen=True)
class Reason:
    """Why the detector flagged a message, shown to volunteers."""

    kind: str  # substance | urgent | intent | context | similar | faq | model
    term: str
    detail: str
    weight: float

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "term": self.term, "detail": self.detail, "weight": self.weight}


@dataclass(frozen=True)
class Detection:
    flagged: bool
    urgent: bool
    score: float
    reasons: tuple[Reason, ...]
    language: str
    substances: tuple[str, ...]


@dataclass(frozen=True)
class Channel:
    id: int
    platform: str
    chat_id: str
    title: str
    kind: str
    language: str | None
    opted_in: bool
    consent_by: str | None
    consent_at: datetime | None
    server_id: str | None = None
    paused: bool = False  # a coordinator paused watching: nothing from it is read
    watch_from: datetime | None = None  # what was sent before (while paused) is not read

    def ref(self) -> ChannelRef:
        return ChannelRef(
            platform=self.platform,
            chat_id=self.chat_id,
            title=self.title,
            kind=self.kind,
            language=self.language,
            server_id=self.server_id,
        )


@dataclass(frozen=True)
class StoredMessage:
    id: int
    channel_id: int
    platform_message_id: str
    author: str  # pseudonym
    author_name: str
    text: str
    sent_at: datetime
    reply_to_message_id: str | None
    case_id: int | None
    flagged: bool
    urgent: bool
    score: float
    reasons: tuple[Reason, ...]
    language: str | None
    substances: tuple[str, ...]
    detected: bool = True
    edited_at: datetime | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class Suggestion:
    entry_id: str
    topic: str
    rank: int
    score: float
    why: tuple[str, ...]
    status: str
    question: str
    answer: str
    language: str


@dataclass(frozen=True)
class Reply:
    id: int
    case_id: int
    text: str
    visibility: Visibility
    status: ReplyStatus
    written_by: int
    approved_by: int
    approved_by_name: str
    created_at: datetime
    sent_at: datetime | None
    platform_message_id: str | None
    error: str | None


@dataclass(frozen=True)
class Case:
    id: int
    channel_id: int
    channel_title: str
    platform: str
    author: str
    status: CaseStatus
    urgent: bool
    score: float
    language: str | None
    created_at: datetime
    updated_at: datetime
    claimed_by: int | None
    claimed_by_name: str | None
    first_message_id: int
    excerpt: str
    reasons: tuple[Reason, ...]
    substances: tuple[str, ...]
    channel_kind: str = "group"  # direct: the person wrote to the bot privately
    dismiss_reason: DismissReason | None = None


@dataclass(frozen=True)
class CaseDetail:
    case: Case
    messages: tuple[StoredMessage, ...]  # the case's own messages and their context
    suggestions: tuple[Suggestion, ...]
    replies: tuple[Reply, ...]


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    trained: bool
    active: bool
    on_duty: bool = False  # wants urgent alerts in the console
    sessions_after: datetime | None = None  # console sessions begun before it are over
    language: str | None = None  # the console's language they chose (nl, fr, en)

    @property
    def may_claim(self) -> bool:
        """Only trained volunteers (and experts and coordinators) take cases."""
        return self.active and (self.trained or self.role is not Role.VOLUNTEER)


@dataclass(frozen=True)
class OutgoingMessage:
    """What the outbox asks an adapter to deliver. ``key`` makes a retry recognisable."""

    key: str
    channel: ChannelRef
    text: str
    visibility: Visibility
    reply_to_message_id: str | None = None
    recipient_id: str | None = None


@dataclass(frozen=True)
class OutboxItem:
    id: int
    reply_id: int | None
    channel_id: int | None  # None for an alert to a volunteer's own account
    text: str
    visibility: Visibility
    reply_to_message_id: str | None
    attempts: int
    status: OutboxStatus
    kind: str = "reply"  # reply | notice | alert
    recipient: str | None = None  # pseudonym of the person a private reply goes to
    part_ids: tuple[str, ...] = ()  # platform ids of the parts delivered so far
    alert_link_id: int | None = None  # the volunteer's linked account an alert goes to


@dataclass(frozen=True)
class FeedbackLabel:
    """A flagged message and what volunteers' handling of its case says about it."""

    message_id: int
    text: str
    language: str | None
    drug_related: bool
    source: str  # answered | dismissed:<reason>


LEXICON_EDIT_KINDS = ("term", "urgent", "false_friend")


@dataclass(frozen=True)
class LexiconEdit:
    """An expert's addition to the shipped lexicon, with its provenance."""

    id: int
    kind: str  # term | urgent | false_friend
    term: str
    substance: str | None
    strong: bool
    context: tuple[str, ...]
    language: str | None
    note: str
    source: str
    licence: str
    author: str
    created_at: datetime
    removed_by: str | None = None
    removed_at: datetime | None = None


class PendingStatus(StrEnum):
    AWAITING = "awaiting"  # a second approver has to look at it
    APPROVED = "approved"  # it became a reply
    RETURNED = "returned"  # sent back to its writer with a comment


@dataclass(frozen=True)
class PendingReply:
    """A reply waiting for a second approver (four-eyes)."""

    id: int
    case_id: int
    text: str
    visibility: Visibility
    entry_id: str | None
    written_by: int
    written_by_name: str
    reasons: tuple[str, ...]
    status: PendingStatus
    created_at: datetime
    reviewed_by_name: str | None = None
    review_comment: str | None = None
    reply_id: int | None = None


class NoteKind(StrEnum):
    NOTE = "note"  # for the team
    QUESTION = "question"  # escalated to the experts
    ANSWER = "answer"  # an expert's answer to a question


@dataclass(frozen=True)
class CaseNote:
    """The team's discussion of a case; never sent to anyone outside the console."""

    id: int
    case_id: int
    author: str
    author_role: str
    kind: NoteKind
    text: str
    created_at: datetime
    question_id: int | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True)
class PastAnswer:
    """A reply that was approved, as the answers history shows it."""

    reply_id: int
    case_id: int
    text: str
    entry_id: str | None
    language: str | None
    approved_by: str
    approved_at: datetime
    status: ReplyStatus
    substances: tuple[str, ...]

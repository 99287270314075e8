"""The store's tables, as SQLAlchemy Core metadata. Migrations create and evolve them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(100), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("trained", sa.Boolean, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Volunteers on duty get urgent alerts in the console.
    sa.Column("on_duty", sa.Boolean, nullable=False, server_default=sa.false()),
    # The console's language they chose (nl, fr, en); none: their browser's preference.
    sa.Column("language", sa.String(5)),
    sa.Column("last_login_at", UTCDateTime),
    # Console sessions that began before this moment are no longer valid (set when a
    # coordinator deactivates the account, so reactivating it does not revive them).
    sa.Column("sessions_after", UTCDateTime),
)

# One-time links a coordinator sends to let someone create their own account. Only the
# token's SHA-256 is kept; the link works once, until ``expires_at``.
invites = sa.Table(
    "invites",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("trained", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
    sa.Column("user_id", sa.ForeignKey("users.id")),  # the account it became
    sa.Column("revoked_at", UTCDateTime),
)

# Console sessions ended by logging out (their ids), so a copied cookie is worth nothing
# on any instance; a row can go once the cookie would have expired anyway.
ended_sessions = sa.Table(
    "ended_sessions",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_ended_sessions_expires_at", "expires_at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
)

channels = sa.Table(
    "channels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("chat_id", sa.String(100), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("language", sa.String(5)),
    sa.Column("opted_in", sa.Boolean, nullable=False),
    # The consent record: which admin (pseudonymised) opted in, when, and what the chat
    # was called at that moment.
    sa.Column("consent_by", sa.String(64)),
    sa.Column("consent_at", UTCDateTime),
    sa.Column("consent_title", sa.Text),
    sa.Column("opted_out_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # The server (Discord guild) a channel belongs to: a server-wide opt-in covers it.
    sa.Column("server_id", sa.String(100)),
    # A coordinator paused watching: nothing from the channel is read while this is set.
    sa.Column("paused_at", UTCDateTime),
    sa.Column("paused_by", sa.ForeignKey("users.id")),
    # Set when watching resumes: messages sent before it (during the pause, delivered
    # late or by a history catch-up) are not read either.
    sa.Column("watch_from", UTCDateTime),
    # Shorter retention for this channel than privacy.retention_*_days (null: the setting).
    sa.Column("retention_unanswered_days", sa.Integer),
    sa.Column("retention_answered_days", sa.Integer),
    sa.UniqueConstraint("platform", "chat_id"),
)

# The one reversible link from a pseudonym to a platform address, kept only so that a
# private reply can reach the person; erasure and retention delete it with the rest.
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("pseudonym", sa.String(64), primary_key=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("platform_user_id", sa.String(100), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Whether the bot may write to this person privately: true once they wrote to the
    # bot directly, false once the platform refused; unknown (null) until then.
    sa.Column("direct_ok", sa.Boolean),
)

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("channel_id", sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("urgent", sa.Boolean, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("language", sa.String(5)),
    sa.Column("first_message_id", sa.Integer),
    sa.Column("claimed_by", sa.ForeignKey("users.id")),
    sa.Column("claimed_at", UTCDateTime),
    # The claim holder's last action on the case; the claim lapses after
    # console.claim_minutes without one.
    sa.Column("claim_active_at", UTCDateTime),
    # Why a volunteer dismissed the case (bot.models.DismissReason): detection feedback.
    sa.Column("dismiss_reason", sa.String(30)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "status", "urgent", "created_at"),
    sa.Index(None, "claimed_by", "status"),
    sa.Index(None, "channel_id", "author", "status"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("channel_id", sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("platform_message_id", sa.String(100), nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("author_name", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("reply_to_message_id", sa.String(100)),
    sa.Column("case_id", sa.ForeignKey("cases.id")),
    sa.Column("detected", sa.Boolean, nullable=False),
    sa.Column("flagged", sa.Boolean, nullable=False),
    sa.Column("urgent", sa.Boolean, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("language", sa.String(5)),
    sa.Column("substances", sa.JSON, nullable=False),
    sa.Column("edited_at", UTCDateTime),
    # Deleted on the platform: the text is gone, the row stays so the thread reads right.
    sa.Column("deleted_at", UTCDateTime),
    sa.UniqueConstraint("channel_id", "platform_message_id"),
    sa.Index(None, "channel_id", "sent_at"),
    sa.Index(None, "case_id"),
    # The messages just before a case (its context), newest first, without sorting the
    # channel's whole history: the case page stays as fast at 100,000 cases as at 1,000.
    sa.Index(None, "channel_id", "id"),
)

faq_entries = sa.Table(
    "faq_entries",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reviewed_by", sa.Text),
    sa.Column("review_by", sa.Date),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

faq_revisions = sa.Table(
    "faq_revisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("entry_id", sa.ForeignKey("faq_entries.id"), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("entry_id", "revision"),
)

# Embeddings of an entry's question variants, computed once per revision and model.
faq_vectors = sa.Table(
    "faq_vectors",
    metadata,
    sa.Column("entry_id", sa.ForeignKey("faq_entries.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("dimension", sa.Integer, nullable=False),
    sa.Column("vectors", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

suggestions = sa.Table(
    "suggestions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("entry_id", sa.ForeignKey("faq_entries.id"), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("why", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "case_id"),
)

replies = sa.Table(
    "replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("visibility", sa.String(10), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("written_by", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("approved_by", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("entry_id", sa.String(100)),
    # Set by the console per reply form (and by API callers): a resubmission is recognised.
    sa.Column("request_key", sa.String(100), unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("approved_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("platform_message_id", sa.String(100)),
    sa.Column("error", sa.Text),
    sa.Index(None, "case_id"),
)

# A volunteer's own Telegram or Discord account, linked by them (``/link CODE`` to the
# bot) so that urgent cases can alert them by private message while they are on duty.
# Unlinking keeps the row (who, when) but forgets the platform address.
alert_links = sa.Table(
    "alert_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("platform_user_id", sa.String(100), nullable=False),
    sa.Column("linked_at", UTCDateTime, nullable=False),
    sa.Column("unlinked_at", UTCDateTime),
    # The platform refused a private message (the volunteer blocked the bot).
    sa.Column("unreachable_at", UTCDateTime),
    sa.UniqueConstraint("user_id", "platform"),
)

# One-time codes shown in the console and sent to the bot as ``/link CODE``; only their
# SHA-256 is kept, and a code works once, for ``LINK_CODE_MINUTES``.
link_codes = sa.Table(
    "link_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reply_id", sa.ForeignKey("replies.id"), unique=True),
    # None for an urgent alert to a volunteer's own account (``alert_link_id``).
    sa.Column("channel_id", sa.ForeignKey("channels.id")),
    sa.Column("kind", sa.String(20), nullable=False),  # reply | notice | alert
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("visibility", sa.String(10), nullable=False),
    sa.Column("reply_to_message_id", sa.String(100)),
    sa.Column("recipient", sa.String(64)),  # pseudonym, for private replies
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("platform_message_id", sa.String(100)),
    # Platform ids of the parts already delivered, for a text split into several
    # messages: a retry resumes after them instead of posting them again.
    sa.Column("part_ids", sa.JSON),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("alert_link_id", sa.ForeignKey("alert_links.id", name="fk_outbox_alert_link_id")),
    # case:volunteer:round of an alert, so that two instances never send the same one.
    sa.Column("alert_key", sa.String(100)),
    sa.Index(None, "status", "next_attempt_at"),
    sa.UniqueConstraint("alert_key", name="uq_outbox_alert_key"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.ForeignKey("users.id")),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("object_type", sa.String(30), nullable=False),
    sa.Column("object_id", sa.String(100), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index(None, "object_type", "object_id"),
)

# Experts' changes to the shipped lexicon (bot/data/lexicon.toml), applied on top of it:
# a term for a substance, an urgency phrase, or a false friend (a term that is another
# word next to its context words). Removing one keeps the row, with who and when.
lexicon_edits = sa.Table(
    "lexicon_edits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # term | urgent | false_friend
    sa.Column("term", sa.Text, nullable=False),
    sa.Column("substance", sa.String(50)),  # term: which substance
    sa.Column("strong", sa.Boolean, nullable=False),  # term: flags on its own
    sa.Column("context", sa.JSON, nullable=False),  # false_friend: the context words
    sa.Column("language", sa.String(5)),
    sa.Column("note", sa.Text, nullable=False),  # why (an example message, a source)
    sa.Column("source", sa.Text, nullable=False),  # provenance: own knowledge or a list
    sa.Column("licence", sa.Text, nullable=False),
    sa.Column("author", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("removed_by", sa.ForeignKey("users.id")),
    sa.Column("removed_at", UTCDateTime),
)

# Detection models retrained on volunteers' feedback (`peerdesk detect retrain`); the
# newest active one is used instead of the shipped file, by every instance.
detection_models = sa.Table(
    "detection_models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model", sa.LargeBinary, nullable=False),  # the .npz file
    sa.Column("info", sa.JSON, nullable=False),  # figures before/after, counts
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# A reply that policy (bot/approval.py) sends to a second approver before it may go out:
# it waits here, and becomes a reply (with its outbox row) only once someone other than
# its writer approves it, possibly edited; or it is sent back with a comment.
pending_replies = sa.Table(
    "pending_replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("visibility", sa.String(10), nullable=False),
    sa.Column("entry_id", sa.String(100)),
    sa.Column("written_by", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # awaiting | approved | returned
    sa.Column("request_key", sa.String(100), unique=True),
    sa.Column("reviewed_by", sa.ForeignKey("users.id")),
    sa.Column("review_comment", sa.Text),
    sa.Column("reply_id", sa.ForeignKey("replies.id")),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("reviewed_at", UTCDateTime),
    sa.Index(None, "status", "created_at"),
    sa.Index(None, "case_id"),
)

# What survives the retention purge of a case: figures for reports, with no text and no
# person (no pseudonym, no message, no reply text).
case_archive = sa.Table(
    "case_archive",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.Integer, nullable=False),  # the purged case's id, for counting
    sa.Column("channel_id", sa.Integer),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("language", sa.String(5)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("urgent", sa.Boolean, nullable=False),
    sa.Column("dismiss_reason", sa.String(30)),
    sa.Column("substances", sa.JSON, nullable=False),
    sa.Column("topics", sa.JSON, nullable=False),  # FAQ entries suggested or used
    sa.Column("replies", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("first_reply_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime, nullable=False),
    sa.Column("purged_at", UTCDateTime, nullable=False),
    sa.Index(None, "created_at"),
)

# The team's discussion of a case, never sent anywhere: internal notes, questions
# escalated to the experts, and the experts' answers (``question_id`` points to the
# question answered; a question is open until ``answered_at``).
case_notes = sa.Table(
    "case_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("author", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # note | question | answer
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("question_id", sa.ForeignKey("case_notes.id")),
    sa.Column("answered_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "case_id"),
    sa.Index(None, "kind", "answered_at"),
)

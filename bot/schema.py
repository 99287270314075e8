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
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "status", "urgent", "created_at"),
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

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reply_id", sa.ForeignKey("replies.id"), unique=True),
    sa.Column("channel_id", sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # reply | notice
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
    sa.Index(None, "status", "next_attempt_at"),
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

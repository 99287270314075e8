"""Urgent alerts by private message: volunteers link their own Telegram or Discord
account to the console, and the outbox carries alerts to it

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("platform_user_id", sa.String(100), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unlinked_at", sa.DateTime(timezone=True)),
        sa.Column("unreachable_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("user_id", "platform"),
    )
    op.create_table(
        "link_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("channel_id", existing_type=sa.Integer, nullable=True)
        batch.add_column(
            sa.Column(
                "alert_link_id",
                sa.Integer,
                sa.ForeignKey("alert_links.id", name="fk_outbox_alert_link_id"),
            )
        )
        batch.add_column(sa.Column("alert_key", sa.String(100)))
        batch.create_unique_constraint("uq_outbox_alert_key", ["alert_key"])


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

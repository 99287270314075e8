"""People and channels for coordinators: invitations, last login, ended sessions, paused
channels and per-channel retention

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sessions_after", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column(
                "paused_by",
                sa.Integer(),
                sa.ForeignKey("users.id", name="fk_channels_paused_by_users"),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("watch_from", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retention_unanswered_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("retention_answered_days", sa.Integer(), nullable=True))
    op.create_table(
        "invites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("trained", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_invites_token_hash"),
    )


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

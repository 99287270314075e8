"""Console sessions ended by logging out, so a copy of their cookie is worth nothing

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        # After this the cookie has expired anyway and the row can go.
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_ended_sessions_expires_at", "expires_at"),
    )


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

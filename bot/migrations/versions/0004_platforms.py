"""Real platforms: server-wide opt-in, edits and deletions, private reach, split replies

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("server_id", sa.String(length=100), nullable=True))
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("direct_ok", sa.Boolean(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("part_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

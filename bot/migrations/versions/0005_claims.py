"""Claims that lapse after inactivity, and on-duty volunteers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("claim_active_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_cases_claimed_by_status", ["claimed_by", "status"])
    # A claim made before this migration was last active when it was made.
    op.execute("UPDATE cases SET claim_active_at = claimed_at WHERE claimed_by IS NOT NULL")
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("on_duty", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

"""Replies remember the request that made them (no double sends)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("replies") as batch:
        batch.add_column(sa.Column("request_key", sa.String(length=100), nullable=True))
        batch.create_unique_constraint(op.f("uq_replies_request_key"), ["request_key"])


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

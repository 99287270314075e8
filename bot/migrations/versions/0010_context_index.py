"""An index for a case's context messages (channel, id)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_channel_id_id", "messages", ["channel_id", "id"])


def downgrade() -> None:
    # Migrations are forward only: restore a backup to go back.
    raise NotImplementedError("peerdesk migrations are forward only")

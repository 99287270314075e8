"""Migrations: applied from scratch, idempotent, and matching the declared schema."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot import migrate
from bot.schema import metadata
from bot.store import Store


def _diff(conn: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_creates_the_declared_schema(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert await migrate.current_revision(store.engine) is None
        await store.initialize()
        assert await migrate.current_revision(store.engine) == migrate.head_revision()
        await store.initialize()  # a second run changes nothing
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert set(metadata.tables) <= tables
    finally:
        await store.close()


def test_migrations_are_numbered_and_forward_only() -> None:
    files = sorted(p.name for p in (migrate.MIGRATIONS / "versions").glob("*.py"))
    assert files and all(name[:4].isdigit() for name in files)
    for path in (migrate.MIGRATIONS / "versions").glob("*.py"):
        assert "forward only" in path.read_text()

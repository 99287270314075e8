"""Copy a deployment's data from one database to another: the way from one SQLite file to
PostgreSQL when one machine is no longer enough (`peerdesk migrate-sqlite-to-postgres`).

Both databases are brought to the newest schema first; the target must be empty. Every
table is copied in dependency order inside one transaction on the target, so a failure
leaves it empty rather than half full, and the row counts are compared at the end. The
store's secrets (the pseudonym key among them) travel with the data, so pseudonyms
computed before the move still match the same people after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot import schema as t
from bot.store import Store

Progress = Callable[[str, int], None]
BATCH = 1000


class CopyError(Exception):
    """The copy cannot start or did not check out; the message says why."""


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_url(source: str) -> str:
    """A SQLite URL for ``source`` (a URL or a path to an existing file)."""
    if "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise CopyError(f"{source}: no such SQLite file")
        return f"sqlite+aiosqlite:///{path.resolve()}"
    try:
        url = make_url(source)
    except ArgumentError:
        raise CopyError(f"{source}: not a database URL") from None
    if not url.drivername.startswith("sqlite"):
        raise CopyError(f"{_shown(source)}: the source must be a SQLite database")
    if not url.database or not Path(url.database).is_file():
        raise CopyError(f"{_shown(source)}: no such SQLite file")
    return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)


def postgres_url(target: str) -> str:
    """A postgresql+asyncpg URL for ``target`` (postgres://, postgresql:// are accepted)."""
    if target.startswith("postgres://"):
        target = "postgresql://" + target.removeprefix("postgres://")
    try:
        url = make_url(target)
    except ArgumentError:
        raise CopyError("the target is not a database URL") from None
    if url.get_backend_name() != "postgresql":
        raise CopyError(f"{_shown(target)}: the target must be a PostgreSQL database")
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def _counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        return {
            table.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
            for table in t.metadata.sorted_tables
        }


async def copy_store(
    source: str, target: str, *, progress: Progress | None = None
) -> dict[str, int]:
    """Copy every table of ``source`` into the empty ``target``; returns rows per table."""
    src = Store(source)
    dst = Store(target)
    try:
        await src.initialize()
        await dst.initialize()
        occupied = {name: n for name, n in (await _counts(dst)).items() if n}
        if occupied:
            name, n = next(iter(occupied.items()))
            raise CopyError(
                f"{_shown(target)} already holds data ({name}: {n} rows); copy into an "
                "empty database"
            )
        copied: dict[str, int] = {}
        async with src.engine.connect() as read, dst.engine.begin() as write:
            for table in t.metadata.sorted_tables:
                order = list(table.primary_key.columns)
                result = await read.stream(sa.select(table).order_by(*order))
                n = 0
                async for rows in result.partitions(BATCH):
                    await write.execute(table.insert(), [dict(r._mapping) for r in rows])
                    n += len(rows)
                copied[table.name] = n
                if progress is not None:
                    progress(table.name, n)
            if write.dialect.name == "postgresql":
                await _reset_sequences(write)
        if await _counts(dst) != await _counts(src):
            raise CopyError("the row counts differ after the copy; the target was left as is")
        return copied
    finally:
        await src.close()
        await dst.close()


async def _reset_sequences(conn: AsyncConnection) -> None:
    """Rows were inserted with their ids: move each id sequence past the largest (table
    names are the schema's own, not input)."""
    for table in t.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, sa.Integer):
            continue
        pk = keys[0]
        await conn.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk.name}'), "
                f"COALESCE((SELECT MAX({pk.name}) FROM {table.name}), 0) + 1, false)"
            )
        )

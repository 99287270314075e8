"""Which instance runs the jobs that must run once, not once per instance.

Several instances sharing one PostgreSQL database each run their minute's maintenance;
the jobs that act on shared data (recovering unprocessed messages, FAQ expiry, lapsed
claims, urgent re-alerts) run only on the instance holding a PostgreSQL advisory lock.
The lock is held on a dedicated connection from one tick to the next, so the same
instance keeps the jobs (and its memory of when it last alerted) until it stops or its
connection drops; then the next instance to try takes over. On SQLite there is one
process, which always runs them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

#: The advisory lock's key ("peerdesk" in ASCII, as a bigint), the same on every instance.
LOCK_KEY = int.from_bytes(b"peerdesk", "big") & 0x7FFF_FFFF_FFFF_FFFF


class Leader:
    """``await leader.acquire()`` is True while this instance runs the shared jobs.

    ``dsn`` is a plain PostgreSQL DSN (asyncpg), or None with one process (SQLite).
    ``__init__`` does no I/O; ``release`` at shutdown lets another instance take over.
    """

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self._conn: Any = None

    @property
    def holding(self) -> bool:
        return self.dsn is None or self._conn is not None

    async def acquire(self) -> bool:
        if self.dsn is None:
            return True
        import asyncpg  # type: ignore[import-untyped]

        if self._conn is not None:
            try:  # still connected, so still holding the lock
                await self._conn.fetchval("SELECT 1", timeout=10)
                return True
            except Exception as exc:
                # Any failure means the lock may be gone. A connection the server ended
                # can fail with asyncpg's InternalClientError ("another operation is in
                # progress"), which is neither an InterfaceError nor a PostgresError.
                logger.warning(
                    "lost the connection holding the scheduled jobs (%s); trying again",
                    type(exc).__name__,
                )
                await self._drop()
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY, timeout=10)
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        logger.info("this instance runs the scheduled jobs")
        self._conn = conn
        return True

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.fetchval("SELECT pg_advisory_unlock($1)", LOCK_KEY, timeout=2)
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)

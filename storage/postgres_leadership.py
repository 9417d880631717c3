"""Leader election for replicas sharing one PostgreSQL database: a session-level advisory lock."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from storage.postgres_driver import PING_TIMEOUT, close, connect, lock_key, mapped, terminate

DEFAULT_NAME = "discovery-leader"


class AdvisoryLockLeadership:
    """Leadership `name` as an advisory lock held by a connection of its own.

    The lock ends when release() is called or when that connection dies (server restart,
    network), and the server then lets another replica take it; holds() notices the dead
    connection. Replicas contend only with others using the same `name`.
    """

    def __init__(self, url: str, name: str = DEFAULT_NAME) -> None:
        self._url = url
        # The key replicas of earlier versions used too, so a rolling upgrade keeps one leader.
        self._key = lock_key(f"discovery.leader:{name}")
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> bool:
        async with self._lock:
            if await self._still_held():
                return True
            conn = await connect(self._url)
            try:
                with mapped():
                    held = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key)
            except BaseException:
                terminate(conn)
                raise
            if not held:
                await close(conn)
                return False
            self._conn = conn
            return True

    async def holds(self) -> bool:
        async with self._lock:
            return await self._still_held()

    async def _still_held(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        with contextlib.suppress(Exception):  # whatever failed, we cannot vouch for the lock
            if not conn.is_closed():
                await asyncio.wait_for(conn.fetchval("SELECT 1"), PING_TIMEOUT)
                return True
        # The server released the lock with the session.
        self._conn = None
        terminate(conn)
        return False

    async def release(self) -> None:
        # Closing the session releases its advisory lock, so no unlock call can fail half-way.
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await close(conn)

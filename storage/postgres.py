"""The PostgreSQL backend (asyncpg): several service replicas share one database.

Each replica appends through its own pool (storage/postgres_appends.py), tails the log by
revision and wakes up on LISTEN/NOTIFY (storage/postgres_listener.py). Leader election among the
replicas is storage/postgres_leadership.py. Appends are durable when they return as long as the
server keeps its default synchronous_commit = on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from storage.base import NewEvent, Snapshot, StoredEvent
from storage.errors import Conflict, StorageUnavailable
from storage.postgres_appends import Appender
from storage.postgres_driver import CLOSE_TIMEOUT, CONNECT_TIMEOUT, mapped
from storage.postgres_listener import Listener
from storage.postgres_schema import (
    HEAD,
    HORIZON,
    LOCK_EVENTS,
    MOVED,
    SCHEMA,
    SCHEMA_LOCK,
    SELECT,
    SET_META,
)
from storage.waiters import HeadWatch

# How long aclose() lets calls already under way finish (e.g. appends waiting for the lock).
_DRAIN_TIMEOUT = 30.0


class PostgresEventLog:
    """The event log in a PostgreSQL database; open it with `await PostgresEventLog.open(url)`."""

    def __init__(self, pool: Any, poll_interval: float) -> None:
        self._pool = pool
        self._poll_interval = poll_interval
        self._closed = False
        # The highest head this instance knows was committed (its own appends, notifications).
        self._watch = HeadWatch()
        self._listener: Listener | None = None
        self._appender = Appender(self._conn, self._watch)
        self._in_flight = 0
        self._drained = asyncio.Event()

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 10, poll_interval: float = 1.0
    ) -> PostgresEventLog:
        """Connect, create the schema if missing and start listening; raises StorageUnavailable.

        `poll_interval` bounds how long wait_for() trusts notifications alone (seconds).
        """
        with mapped():
            # min_size=0: no background reconnect attempts (and log noise) while the server is down;
            # connections are made on demand and kept while in use.
            pool = await asyncpg.create_pool(
                url, min_size=0, max_size=pool_size, timeout=CONNECT_TIMEOUT
            )
        log = cls(pool, poll_interval)
        try:
            with mapped():
                async with pool.acquire() as conn, conn.transaction():
                    # Replicas starting together would race CREATE ... IF NOT EXISTS into unique
                    # violations on the catalogs; the lock makes the DDL run once, then no-op.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                    await conn.execute(SCHEMA)
            log._listener = await Listener.open(url, log._watch)
        except BaseException:
            pool.terminate()
            raise
        return log

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log is closed")

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        """A pooled connection for one call; counts the call so aclose() can let it finish."""
        self._check_open()
        self._in_flight += 1
        try:
            with mapped():
                async with self._pool.acquire() as conn:
                    yield conn
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._drained.set()

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        if not events:
            async with self._conn() as conn:
                if base_revision is not None and await conn.fetchval(MOVED, stream, base_revision):
                    raise Conflict(f"stream {stream!r} changed after revision {base_revision}")
                return int(await conn.fetchval(HEAD))
        self._check_open()
        return await self._appender.append(stream, events, base_revision)

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> list[StoredEvent]:
        # Two statements rather than "$3 IS NULL OR stream = $3": each gets its own plan, and
        # the filtered one can use the (stream, revision) index.
        where, args = ("", ()) if stream is None else ("stream = $3 AND", (stream,))
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"{SELECT} WHERE {where} revision > $1 ORDER BY revision LIMIT $2",
                after,
                max(limit, 0),
                *args,
            )
        return [StoredEvent(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def _fetchval(self, sql: str, *args: object) -> Any:
        async with self._conn() as conn:
            return await conn.fetchval(sql, *args)

    async def head(self) -> int:
        return int(await self._fetchval(HEAD))

    async def horizon(self) -> int:
        return int(await self._fetchval(f"SELECT COALESCE({HORIZON}, 0)"))

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        # Notifications can be lost (e.g. across a reconnect), so never wait longer than
        # poll_interval without re-reading the head.
        return await self._watch.wait_for(
            after, timeout, refresh=self.head, poll_interval=self._poll_interval
        )

    async def save_snapshot(self, revision: int, blob: bytes) -> None:
        await self._fetchval(
            """
            INSERT INTO snapshot (revision, blob, taken_at) VALUES ($1, $2, clock_timestamp())
            ON CONFLICT (only_row) DO UPDATE
            SET revision = EXCLUDED.revision, blob = EXCLUDED.blob, taken_at = EXCLUDED.taken_at
            WHERE snapshot.revision <= EXCLUDED.revision
            """,
            revision,
            blob,
        )

    async def load_snapshot(self) -> Snapshot | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT revision, blob, taken_at FROM snapshot")
        return None if row is None else Snapshot(row[0], row[1], row[2])

    async def compact(self, before_revision: int, recorded_before: datetime) -> int:
        async with self._conn() as conn, conn.transaction(isolation="read_committed"):
            # The appenders' lock: deleting the newest events and moving the horizon must
            # look atomic to them, since they compute the next revision from both.
            await conn.execute(LOCK_EVENTS)
            # Nothing newer than the snapshot goes, so snapshot + log rebuild the state.
            bound = await conn.fetchval(
                "SELECT LEAST($1::bigint, COALESCE((SELECT revision + 1 FROM snapshot), 1))",
                before_revision,
            )
            # Only a prefix may go (revisions stay dense above the horizon): the first event
            # recorded too recently ends it, even if older ones follow after a clock step.
            recent = await conn.fetchval(
                "SELECT min(revision) FROM events WHERE revision < $1 AND recorded_at >= $2",
                bound,
                recorded_before,
            )
            row = await conn.fetchrow(
                """
                WITH gone AS (DELETE FROM events WHERE revision < $1 RETURNING revision)
                SELECT count(*), max(revision) FROM gone
                """,
                bound if recent is None else recent,
            )
            if row[0]:
                await conn.execute(SET_META, "horizon", str(row[1]))
        return int(row[0])

    async def mark_alive(self, at: datetime) -> None:
        # ISO text rather than TIMESTAMPTZ: the value comes back exactly as given.
        await self._fetchval(SET_META, "last_alive", at.isoformat())

    async def last_alive(self) -> datetime | None:
        value = await self._fetchval("SELECT value FROM meta WHERE key = 'last_alive'")
        return None if value is None else datetime.fromisoformat(value)

    async def aclose(self) -> None:
        if self._closed:
            return
        # Appends queued before the close are committed (or fail) before anything closes.
        await self._appender.drain(_DRAIN_TIMEOUT)
        self._closed = True
        self._watch.close()  # waiters see the log closed and raise StorageUnavailable
        if self._listener is not None:
            await self._listener.aclose()
        if self._in_flight:
            # Calls that got in before the close finish, so what they appended is acknowledged.
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), _DRAIN_TIMEOUT)
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except Exception:
            self._pool.terminate()

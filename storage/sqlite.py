"""The SQLite backend: WAL, synchronous=FULL, and one writer task that commits appends in groups.

Every write goes through the writer task (storage/sqlite_writer.py), which owns the write
connection: it drains whatever appends are queued, commits them in one transaction (one fsync),
and only then resolves their futures. Reads use a second connection, so WAL lets them run while
the writer commits.

One process per database file: revisions are assigned from the writer's in-memory head.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import aiosqlite

from membership.codec import micros_to_time, time_to_micros
from storage.base import NewEvent, Snapshot, StoredEvent
from storage.errors import StorageError, StorageUnavailable
from storage.sqlite_schema import (
    COLUMNS,
    LAST_ALIVE,
    MARK_ALIVE,
    RAISE_HORIZON,
    SAVE_SNAPSHOT,
    SCHEMA,
    driver_errors,
)
from storage.sqlite_writer import SqliteWriter, connection_thread
from storage.waiters import HeadWatch

_RECENT = 4096


def _open_writer(path: str) -> sqlite3.Connection:
    """The write connection, opened on the thread that will use it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;" + SCHEMA
        )
    except BaseException:
        conn.close()
        raise
    return conn


def _state(conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(
        "SELECT (SELECT journal_mode FROM pragma_journal_mode),"
        " (SELECT MAX(revision) FROM events),"
        " (SELECT value FROM meta WHERE key = 'horizon')"
    ).fetchall()


class SqliteEventLog:
    def __init__(
        self,
        writer: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        reader: aiosqlite.Connection,
        head: int,
        horizon: int,
    ) -> None:
        self._reader = reader
        self._watch = HeadWatch(head)
        self._horizon = horizon
        # The newest events this process committed. A tailing reader (the service's own
        # projection) asks for exactly these next, so they are served without a database round
        # trip; revisions in it are dense because this process is the only writer.
        self._recent: deque[StoredEvent] = deque(maxlen=_RECENT)
        self._writer = SqliteWriter(writer, thread, self._watch, self._remember)
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str) -> SqliteEventLog:
        """Open or create the log (and its directory); raises StorageUnavailable or StorageError."""
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create the directory of {path!r}: {exc}") from exc
        thread = connection_thread()
        loop = asyncio.get_running_loop()
        writer: sqlite3.Connection | None = None
        reader: aiosqlite.Connection | None = None
        try:
            with driver_errors():
                writer = await loop.run_in_executor(thread, _open_writer, path)
                ((mode, top, horizon),) = await loop.run_in_executor(thread, _state, writer)
                if mode != "wal":
                    raise StorageError(f"{path!r} does not support WAL (journal_mode={mode})")
                reader = await aiosqlite.connect(path, isolation_level=None)
                await reader.executescript("PRAGMA query_only=ON; PRAGMA busy_timeout=5000;")
        except BaseException:
            if reader is not None:
                with suppress(sqlite3.Error, ValueError):
                    await reader.close()
            if writer is not None:
                with suppress(sqlite3.Error):
                    await loop.run_in_executor(thread, writer.close)
            thread.shutdown(wait=False)
            raise
        # After compacting every event MAX(revision) forgets how far the log went; the horizon
        # remembers, so revisions are never reused.
        return cls(writer, thread, reader, max(top or 0, horizon or 0), horizon or 0)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log is closed")

    def _remember(self, events: list[StoredEvent]) -> None:
        recent = self._recent
        if events and recent and recent[-1].revision + 1 != events[0].revision:
            recent.clear()
        recent.extend(events)

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        """See EventLog.append. Cancelling a call after its batch has begun does not undo it."""
        self._check_open()
        if not events and base_revision is None:
            return self._watch.head
        return await self._writer.append(stream, events, base_revision)

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> list[StoredEvent]:
        self._check_open()
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        recent = self._recent
        if stream is None and recent and recent[0].revision <= after + 1 <= recent[-1].revision:
            start = after + 1 - recent[0].revision
            return list(islice(recent, start, start + limit))
        with driver_errors():
            if stream is None:
                sql = f"{COLUMNS} WHERE revision > ? ORDER BY revision LIMIT ?"
                rows = await self._reader.execute_fetchall(sql, (after, limit))
            else:
                sql = f"{COLUMNS} WHERE stream = ? AND revision > ? ORDER BY revision LIMIT ?"
                rows = await self._reader.execute_fetchall(sql, (stream, after, limit))
        return [StoredEvent(r[0], r[1], r[2], r[3], micros_to_time(r[4])) for r in rows]

    async def head(self) -> int:
        self._check_open()
        return self._watch.head

    async def horizon(self) -> int:
        self._check_open()
        return self._horizon

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        return await self._watch.wait_for(after, timeout)

    async def save_snapshot(self, revision: int, blob: bytes) -> None:
        self._check_open()
        row = (revision, blob, time_to_micros(datetime.now(UTC)))
        await self._writer.run(lambda: self._writer.execute(SAVE_SNAPSHOT, row))

    async def load_snapshot(self) -> Snapshot | None:
        self._check_open()
        with driver_errors():
            rows = await self._reader.execute_fetchall(
                "SELECT revision, blob, taken_at FROM snapshot"
            )
        return next((Snapshot(r, blob, micros_to_time(at)) for r, blob, at in rows), None)

    async def compact(self, before_revision: int, recorded_before: datetime) -> int:
        self._check_open()
        cutoff = time_to_micros(recorded_before)

        def run() -> tuple[int, int]:
            w = self._writer
            w.execute("BEGIN IMMEDIATE")
            # The snapshot bound is read inside this transaction, so no snapshot can move under
            # us. Only a prefix goes, as in memory.py: revisions stay dense above the horizon
            # even when the clock stepped back between two commits.
            snapshot = w.fetchall("SELECT revision FROM snapshot")
            bound = min(before_revision, snapshot[0][0] + 1 if snapshot else 1)
            (young,) = w.fetchall(
                "SELECT MIN(revision) FROM events WHERE revision < ? AND recorded_at >= ?",
                (bound, cutoff),
            )
            bound = young[0] or bound
            ((count, top),) = w.fetchall(
                "SELECT COUNT(*), MAX(revision) FROM events WHERE revision < ?", (bound,)
            )
            if count:
                w.execute("DELETE FROM events WHERE revision < ?", (bound,))
                w.execute(RAISE_HORIZON, (top,))
            w.execute("COMMIT")
            return int(count), int(top or 0)

        count, top = await self._writer.run(run)
        if count:
            # On the event loop, where readers of these two live.
            self._horizon = max(self._horizon, top)
            self._recent.clear()
        return count

    async def mark_alive(self, at: datetime) -> None:
        self._check_open()
        row = (time_to_micros(at),)
        await self._writer.run(lambda: self._writer.execute(MARK_ALIVE, row))

    async def last_alive(self) -> datetime | None:
        self._check_open()
        with driver_errors():
            rows = await self._reader.execute_fetchall(LAST_ALIVE)
        return next((micros_to_time(value) for (value,) in rows), None)

    async def aclose(self) -> None:
        if self._closing is None:
            self._closed = True
            self._watch.close()
            self._closing = asyncio.create_task(self._shutdown())
        # Shielded: a caller giving up on aclose must not leave the connections half closed.
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        await self._writer.aclose()
        with suppress(sqlite3.Error, ValueError):
            await self._reader.close()

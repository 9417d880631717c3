"""The SQLite backend: WAL, synchronous=FULL, and one writer task that commits appends in groups.

Every write goes through the writer task (storage/sqlite_writer.py), which owns the write
connection: it drains whatever appends are queued, commits them in one transaction (one fsync),
and only then resolves their futures. Reads use a second connection, so WAL lets them run while
the writer commits.

Several processes may share one database file, each with its own log: SQLite's write lock (and
a file lock beside the database, taken first) serializes their transactions, and each takes
its revisions from the database inside its transaction, so revisions stay gap-free in commit
order. What another process commits is learned by reading the database: head() and horizon()
read it, wait_for() learns the heads other logs commit from their change signals
(storage/sqlite_signal.py) and, in case one is lost, re-reads the head every second.
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
from storage.file_lock import FileLock
from storage.sqlite_schema import (
    COLUMNS,
    HEAD,
    HORIZON,
    LAST_ALIVE,
    MARK_ALIVE,
    RAISE_HORIZON,
    SAVE_SNAPSHOT,
    SCHEMA,
    driver_errors,
)
from storage.sqlite_signal import ChangeSignal
from storage.sqlite_writer import SqliteWriter, connection_thread
from storage.waiters import HeadWatch

_RECENT = 4096
# How often wait_for() re-reads the head for commits of other processes: rarely while the
# change signal works, often when it could not be set up.
_POLL_SIGNALLED = 1.0
_POLL_UNSIGNALLED = 0.05


def _open_writer(path: str, lock: FileLock) -> sqlite3.Connection:
    """The write connection, opened on the thread that will use it.

    Under the writers' lock: processes started together (workers) would otherwise race to
    switch a new file to WAL and create the tables, and switching the journal mode does not
    wait out a busy database the way a transaction does.
    """
    lock.acquire()
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.executescript(
                "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                + SCHEMA
            )
        except BaseException:
            conn.close()
            raise
        return conn
    finally:
        lock.release()


def _state(conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(
        f"SELECT (SELECT journal_mode FROM pragma_journal_mode), ({HEAD})"
    ).fetchall()


def writer_lock_path(path: str) -> str:
    """The lock file every writer of the database at `path` takes around its transactions."""
    return f"{path}-writer.lock"


class SqliteEventLog:
    def __init__(
        self,
        writer: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        lock: FileLock,
        reader: aiosqlite.Connection,
        head: int,
    ) -> None:
        self._reader = reader
        # Only ever advances: to this log's own commits and to heads read from the database.
        self._watch = HeadWatch(head)
        # The newest events this log committed. A tailing reader (the service's own
        # projection) asks for exactly these next, so they are served without a database round
        # trip. It only ever holds one run of consecutive revisions (_committed starts over when
        # another process committed in between), and a revision names one event forever, so a
        # slice of it is exactly what the database holds.
        self._recent: deque[StoredEvent] = deque(maxlen=_RECENT)
        self._writer = SqliteWriter(writer, thread, lock, self._watch, self._committed)
        self._signal: ChangeSignal | None = None
        self._refreshed = 0.0  # when wait_for last read the head from the database
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
            lock = FileLock(writer_lock_path(path))
        except OSError as exc:
            thread.shutdown(wait=False)
            raise StorageUnavailable(f"cannot open the lock file of {path!r}: {exc}") from exc
        try:
            with driver_errors():
                try:
                    writer = await loop.run_in_executor(thread, _open_writer, path, lock)
                except OSError as exc:  # flock itself failed
                    raise StorageUnavailable(f"cannot lock {path!r}: {exc}") from exc
                ((mode, head),) = await loop.run_in_executor(thread, _state, writer)
                if mode != "wal":
                    raise StorageError(f"{path!r} does not support WAL (journal_mode={mode})")
                reader = await aiosqlite.connect(path, isolation_level=None)
                await reader.executescript("PRAGMA query_only=ON; PRAGMA busy_timeout=5000;")
        except BaseException:
            lock.close()
            if reader is not None:
                with suppress(sqlite3.Error, ValueError):
                    await reader.close()
            if writer is not None:
                with suppress(sqlite3.Error):
                    await loop.run_in_executor(thread, writer.close)
            thread.shutdown(wait=False)
            raise
        log = cls(writer, thread, lock, reader, head)
        # Without it (a read-only directory, say) other processes' commits are found by polling.
        with suppress(OSError):
            log._signal = ChangeSignal.open(path, log._on_signal)
        return log

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log is closed")

    def _committed(self, events: list[StoredEvent]) -> None:
        recent = self._recent
        if events and recent and recent[-1].revision + 1 != events[0].revision:
            recent.clear()
        recent.extend(events)
        if events and self._signal is not None:
            self._signal.notify(events[-1].revision)

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        """See EventLog.append. Cancelling a call after its batch has begun does not undo it."""
        self._check_open()
        if not events and base_revision is None:
            return await self.head()
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

    async def _fetch_int(self, sql: str) -> int:
        self._check_open()
        with driver_errors():
            ((value,),) = await self._reader.execute_fetchall(sql)
        return int(value)

    async def head(self) -> int:
        # From the database: other processes commit too.
        self._watch.advance(await self._fetch_int(HEAD))
        return self._watch.head

    async def horizon(self) -> int:
        # From the database: another process may have compacted.
        return await self._fetch_int(HORIZON)

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        # This log's own commits wake its waiters at once; other processes' through the change
        # signal, and polling in case a signal was lost.
        poll = _POLL_UNSIGNALLED if self._signal is None else _POLL_SIGNALLED
        return await self._watch.wait_for(after, timeout, refresh=self._refresh, poll_interval=poll)

    def _on_signal(self, head: int, overflowed: bool) -> None:
        if overflowed:
            self._refreshed = 0.0  # a newer head may have been dropped: read it at once
            self._watch.wake()
        self._watch.advance(head)

    async def _refresh(self) -> int:
        # The service's tail waits after every batch it folds: reading the head from the
        # database each time would add a round trip per commit for nothing while the signals
        # bring the heads. Read it once the poll interval has (about) passed, since a signal
        # can be lost, and on the first wait (a commit may have come before the socket was).
        now = asyncio.get_running_loop().time()
        if self._signal is not None and now - self._refreshed < _POLL_SIGNALLED / 2:
            return self._watch.head
        self._refreshed = now
        return await self.head()

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

        def run() -> int:
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
            return int(count)

        count = await self._writer.run(run)
        if count:
            self._recent.clear()  # on the event loop, where its readers live
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
            if self._signal is not None:
                self._signal.close()
            self._closing = asyncio.create_task(self._shutdown())
        # Shielded: a caller giving up on aclose must not leave the connections half closed.
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        await self._writer.aclose()
        with suppress(sqlite3.Error, ValueError):
            await self._reader.close()

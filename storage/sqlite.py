"""The SQLite backend: WAL, synchronous=FULL, and one writer task that commits appends in groups.

Every write goes through the writer task, which owns the write connection: it drains whatever
appends are queued, commits them in one transaction (one fsync), and only then resolves their
futures. Reads use a second connection, so WAL lets them run while the writer commits.

One process per database file: revisions are assigned from the writer's in-memory head.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite

from storage.base import NewEvent, Snapshot, StoredEvent
from storage.errors import Conflict, StorageError, StorageUnavailable

_T = TypeVar("_T")

# Bounds one transaction's size (and the latency of the first request in it); under load the
# next batch is already queued when this one commits, so a larger cap buys little.
_MAX_BATCH = 512
_RECENT = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream, revision);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, blob BLOB NOT NULL,
    taken_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = "SELECT revision, stream, type, data, recorded_at FROM events"
_SAVE_SNAPSHOT = """INSERT INTO snapshot VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
    revision = excluded.revision, blob = excluded.blob, taken_at = excluded.taken_at
    WHERE excluded.revision >= snapshot.revision"""
_LAST_ALIVE = "SELECT value FROM meta WHERE key = 'last_alive'"
_MARK_ALIVE = """INSERT INTO meta VALUES ('last_alive', ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value"""
_RAISE_HORIZON = """INSERT INTO meta VALUES ('horizon', ?)
    ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)"""


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _translate(exc: Exception) -> StorageError:
    # OperationalError covers locked, busy, I/O and disk-full errors; aiosqlite raises
    # ValueError once its connection is closed. Anything else is a bug or a corrupt file.
    unavailable = isinstance(exc, sqlite3.OperationalError | ValueError)
    err = (StorageUnavailable if unavailable else StorageError)(f"sqlite: {exc}")
    err.__cause__ = exc
    return err


@contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, ValueError) as exc:
        raise _translate(exc) from exc


def _fail(done: asyncio.Future[Any], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)


@dataclass(slots=True)
class _Append:
    stream: str
    events: tuple[NewEvent, ...]
    base_revision: int | None
    done: asyncio.Future[int]


@dataclass(slots=True)
class _Job(Generic[_T]):
    run: Callable[[], Awaitable[_T]]
    done: asyncio.Future[_T]


class SqliteEventLog:
    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, head: int, horizon: int
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._head = head
        self._horizon = horizon
        self._pending: deque[_Append | _Job[Any]] = deque()
        # The newest events this process committed. A tailing reader (the service's own
        # projection) asks for exactly these next, so they are served without a database round
        # trip; revisions in it are dense because this process is the only writer.
        self._recent: deque[StoredEvent] = deque(maxlen=_RECENT)
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Event()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-event-log-writer")

    @classmethod
    async def open(cls, path: str) -> SqliteEventLog:
        """Open or create the log (and its directory); raises StorageUnavailable or StorageError."""
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create the directory of {path!r}: {exc}") from exc
        conns: list[aiosqlite.Connection] = []
        try:
            with _driver_errors():
                writer = await aiosqlite.connect(path, isolation_level=None)
                conns.append(writer)
                await writer.executescript(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;"
                    + _SCHEMA
                )
                ((mode, top, horizon),) = await writer.execute_fetchall(
                    "SELECT (SELECT journal_mode FROM pragma_journal_mode),"
                    " (SELECT MAX(revision) FROM events),"
                    " (SELECT value FROM meta WHERE key = 'horizon')"
                )
                if mode != "wal":
                    raise StorageError(f"{path!r} does not support WAL (journal_mode={mode})")
                reader = await aiosqlite.connect(path, isolation_level=None)
                conns.append(reader)
                await reader.executescript("PRAGMA query_only=ON; PRAGMA busy_timeout=5000;")
        except BaseException:
            for conn in conns:
                with suppress(sqlite3.Error, ValueError):
                    await conn.close()
            raise
        # After compacting every event MAX(revision) forgets how far the log went; the horizon
        # remembers, so revisions are never reused.
        return cls(writer, reader, max(top or 0, horizon or 0), horizon or 0)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log is closed")

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        """See EventLog.append. Cancelling a call after its batch has begun does not undo it."""
        self._check_open()
        if not events and base_revision is None:
            return self._head
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append(stream, tuple(events), base_revision, done))
        self._wakeup.set()
        return await done

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> list[StoredEvent]:
        self._check_open()
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        recent = self._recent
        if stream is None and recent and recent[0].revision <= after + 1 <= recent[-1].revision:
            start = after + 1 - recent[0].revision
            return list(islice(recent, start, start + limit))
        with _driver_errors():
            if stream is None:
                sql = f"{_COLUMNS} WHERE revision > ? ORDER BY revision LIMIT ?"
                rows = await self._reader.execute_fetchall(sql, (after, limit))
            else:
                sql = f"{_COLUMNS} WHERE stream = ? AND revision > ? ORDER BY revision LIMIT ?"
                rows = await self._reader.execute_fetchall(sql, (stream, after, limit))
        return [StoredEvent(r[0], r[1], r[2], r[3], _from_micros(r[4])) for r in rows]

    async def head(self) -> int:
        self._check_open()
        return self._head

    async def horizon(self) -> int:
        self._check_open()
        return self._horizon

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        self._check_open()
        try:
            async with asyncio.timeout(timeout):
                while self._head <= after:
                    self._check_open()
                    await self._changed.wait()
        except TimeoutError:
            return self._head > after
        return True

    async def save_snapshot(self, revision: int, blob: bytes) -> None:
        row = (revision, blob, _micros(datetime.now(UTC)))
        await self._write(lambda: self._writer.execute(_SAVE_SNAPSHOT, row))

    async def load_snapshot(self) -> Snapshot | None:
        self._check_open()
        with _driver_errors():
            rows = await self._reader.execute_fetchall(
                "SELECT revision, blob, taken_at FROM snapshot"
            )
        return next((Snapshot(r, blob, _from_micros(at)) for r, blob, at in rows), None)

    async def compact(self, before_revision: int, recorded_before: datetime) -> int:
        cutoff = _micros(recorded_before)

        async def run() -> int:
            w = self._writer
            await w.execute("BEGIN IMMEDIATE")
            # The snapshot bound is read inside this transaction, so no snapshot can move under
            # us. Only a prefix goes, as in memory.py: revisions stay dense above the horizon
            # even when the clock stepped back between two commits.
            snapshot = list(await w.execute_fetchall("SELECT revision FROM snapshot"))
            bound = min(before_revision, snapshot[0][0] + 1 if snapshot else 1)
            (young,) = await w.execute_fetchall(
                "SELECT MIN(revision) FROM events WHERE revision < ? AND recorded_at >= ?",
                (bound, cutoff),
            )
            bound = young[0] or bound
            ((count, top),) = await w.execute_fetchall(
                "SELECT COUNT(*), MAX(revision) FROM events WHERE revision < ?", (bound,)
            )
            if count:
                await w.execute("DELETE FROM events WHERE revision < ?", (bound,))
                await w.execute(_RAISE_HORIZON, (top,))
            await w.execute("COMMIT")
            if count:
                self._horizon = max(self._horizon, top)
                self._recent.clear()
            return int(count)

        return await self._write(run)

    async def mark_alive(self, at: datetime) -> None:
        row = (_micros(at),)
        await self._write(lambda: self._writer.execute(_MARK_ALIVE, row))

    async def last_alive(self) -> datetime | None:
        self._check_open()
        with _driver_errors():
            rows = await self._reader.execute_fetchall(_LAST_ALIVE)
        return next((_from_micros(value) for (value,) in rows), None)

    async def aclose(self) -> None:
        if self._closing is None:
            self._closed = True
            self._wakeup.set()
            self._closing = asyncio.create_task(self._shutdown())
        # Shielded: a caller giving up on aclose must not leave the connections half closed.
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        await asyncio.wait([self._writer_task])  # it fails what it leaves; nothing to raise here
        for conn in (self._writer, self._reader):
            with suppress(sqlite3.Error, ValueError):
                await conn.close()
        self._changed.set()

    async def _write(self, run: Callable[[], Awaitable[_T]]) -> _T:
        self._check_open()
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(run, done))
        self._wakeup.set()
        return await done

    async def _write_loop(self) -> None:
        current: Sequence[_Append | _Job[Any]] = ()
        try:
            # aclose sets _closed first, so everything queued before it is still written.
            while self._pending or not self._closed:
                if not self._pending:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                elif isinstance(first := self._pending[0], _Job):
                    current = (self._pending.popleft(),)
                    await self._run_job(first)
                else:
                    current = batch = self._take_batch()
                    await self._commit(batch)
        finally:
            # Only reached early if the task is cancelled (event loop teardown without aclose):
            # fail every caller still waiting rather than leave it hanging.
            self._closed = True
            for item in (*current, *self._pending):
                _fail(item.done, StorageUnavailable("event log writer stopped"))
            self._pending.clear()

    def _take_batch(self) -> list[_Append]:
        batch: list[_Append] = []
        while self._pending and len(batch) < _MAX_BATCH:
            item = self._pending[0]
            if not isinstance(item, _Append):
                break
            self._pending.popleft()
            if not item.done.cancelled():
                batch.append(item)
        return batch

    async def _run_job(self, job: _Job[Any]) -> None:
        try:
            result = await job.run()
        except Exception as exc:
            await self._rollback()
            _fail(job.done, _translate(exc))
        else:
            if not job.done.done():
                job.done.set_result(result)

    async def _commit(self, batch: list[_Append]) -> None:
        if not batch:
            return
        try:
            outcomes, head, rows = await self._write_batch(batch)
        except Exception as exc:
            await self._rollback()
            err = _translate(exc)
            if len(batch) > 1 and not isinstance(err, StorageUnavailable):
                # Likely one malformed request: retry each alone so only it fails.
                for request in batch:
                    await self._commit([request])
                return
            for request in batch:
                _fail(request.done, err)
            return
        # Only now is the batch durable: acknowledge it, then wake the tailing readers.
        if rows and self._recent and self._recent[-1].revision + 1 != rows[0][0]:
            self._recent.clear()
        self._recent.extend(
            StoredEvent(rev, stream, kind, data, _from_micros(at))
            for rev, stream, kind, data, at in rows
        )
        self._head = head
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Conflict):
                _fail(request.done, outcome)
            elif not request.done.done():
                request.done.set_result(outcome)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _write_batch(
        self, batch: list[_Append]
    ) -> tuple[list[int | Conflict], int, list[tuple[int, str, str, bytes, int]]]:
        w = self._writer
        await w.execute("BEGIN IMMEDIATE")
        stale = await self._stale({(r.stream, r.base_revision) for r in batch})
        recorded_at = _micros(datetime.now(UTC))
        revision = self._head
        written: dict[str, int] = {}  # stream -> its newest revision in this batch
        rows: list[tuple[int, str, str, bytes, int]] = []
        outcomes: list[int | Conflict] = []
        for r in batch:
            base = r.base_revision
            # A request must also see the requests committed before it in the same batch.
            if base is not None and ((r.stream, base) in stale or written.get(r.stream, 0) > base):
                outcomes.append(Conflict(f"stream {r.stream!r} changed after revision {base}"))
                continue
            for event in r.events:
                revision += 1
                rows.append((revision, r.stream, event.type, event.data, recorded_at))
            if r.events:
                written[r.stream] = revision
            outcomes.append(revision)
        if rows:
            await w.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
        await w.execute("COMMIT")
        return outcomes, revision, rows

    async def _stale(self, checks: set[tuple[str, int | None]]) -> set[tuple[str, int]]:
        """The (stream, base_revision) pairs that some committed event of the stream is above."""
        params = [x for stream, base in checks if base is not None for x in (stream, base)]
        if not params:
            return set()
        # One statement for the whole batch; each EXISTS is a seek on events_by_stream.
        values = ", ".join(["(?, ?)"] * (len(params) // 2))
        rows = await self._writer.execute_fetchall(
            f"WITH req(stream, base) AS (VALUES {values}) SELECT stream, base FROM req"
            " WHERE EXISTS (SELECT 1 FROM events e"
            " WHERE e.stream = req.stream AND e.revision > req.base)",
            params,
        )
        return {(stream, base) for stream, base in rows}

    async def _rollback(self) -> None:
        # Fails harmlessly when no transaction is open (the error came before BEGIN finished).
        with suppress(sqlite3.Error, ValueError):
            await self._writer.execute("ROLLBACK")

"""The SQLite backend's one writer task, and the one thread that owns the write connection.

It runs queued writes one at a time, and commits queued appends in groups (one transaction, one
fsync per group). A whole group (BEGIN, conflict check, inserts, COMMIT) is one hop to the
connection's thread and one back, while the next group fills: each hop between the event loop
and a thread is a wake-up that costs more than the statements on a busy machine.

What goes into a group, what conflicts and which revisions are given is decided by
storage/group_commit.py. Several processes (or several logs in one process) may write the same
file: each transaction holds a file lock beside the database, and takes its revision base from
the database inside the transaction, never from this process's view of the head.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from membership.codec import micros_to_time, time_to_micros
from storage.base import NewEvent, StoredEvent
from storage.errors import StorageUnavailable
from storage.file_lock import FileLock
from storage.group_commit import Append, Plan, conflict_checks, plan_batch, take_batch
from storage.sqlite_schema import HEAD, INSERT_ROWS_MAX, insert_rows, stale_query, translate
from storage.waiters import HeadWatch, fail, settle

_T = TypeVar("_T")

# Bounds one transaction's size (and the latency of the first request in it); under load the
# next batch is already queued when this one commits, so a larger cap buys little.
_MAX_BATCH = 512

_Reply = asyncio.Future[int]


@dataclass(slots=True)
class _Job(Generic[_T]):
    run: Callable[[], _T]
    done: asyncio.Future[_T]


def connection_thread() -> ThreadPoolExecutor:
    """The one thread a write connection is opened, used and closed on."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")


class SqliteWriter:
    """Serializes every write on `conn`; `committed` gets each group's events once durable.

    `conn` was opened on `thread` and is used only there (sqlite3 checks that). `lock` is the
    file's writer lock, shared with every other writer of the file; this writer owns (closes) it.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        lock: FileLock,
        watch: HeadWatch,
        committed: Callable[[list[StoredEvent]], None],
    ) -> None:
        self.conn = conn
        self._thread = thread
        self._lock = lock
        self._watch = watch
        self._committed = committed
        self._pending: deque[Append[_Reply] | _Job[Any]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._released = False
        self._task = asyncio.create_task(self._write_loop(), name="sqlite-event-log-writer")

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log writer stopped")

    async def append(self, stream: str, events: Sequence[NewEvent], base: int | None) -> int:
        """Queue one append and wait until its group committed; raises Conflict or StorageError.

        Cancelling the call after its group has begun does not undo it.
        """
        self._check_open()
        done: _Reply = asyncio.get_running_loop().create_future()
        self._pending.append(Append(stream, tuple(events), base, done))
        self._wakeup.set()
        return await done

    async def run(self, job: Callable[[], _T]) -> _T:
        """Run `job` alone on the write connection's thread, in queue order; rolls back if it
        fails. `job` uses `execute` and `fetchall`."""
        self._check_open()
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(job, done))
        self._wakeup.set()
        return await done

    async def aclose(self) -> None:
        """Write everything queued so far, close the connection, then stop. Idempotent."""
        self._closed = True
        self._wakeup.set()
        await asyncio.wait([self._task])  # it fails what it leaves; nothing to raise here
        if not self._released:
            self._released = True
            with suppress(sqlite3.Error):
                await self._on_thread(self.conn.close)
            self._lock.close()
            self._thread.shutdown(wait=False)

    # Statements, for code running on the connection's thread (a seam for fault injection).
    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    async def _on_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _write_loop(self) -> None:
        current: Sequence[Append[_Reply] | _Job[Any]] = ()
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
                    current = batch = take_batch(self._pending, _MAX_BATCH, _abandoned)
                    await self._commit(batch)
        finally:
            # Only reached early if the task is cancelled (event loop teardown without aclose):
            # fail every caller still waiting rather than leave it hanging.
            self._closed = True
            replies = [
                i.reply if isinstance(i, Append) else i.done for i in (*current, *self._pending)
            ]
            fail(replies, StorageUnavailable("event log writer stopped"))
            self._pending.clear()

    async def _run_job(self, job: _Job[Any]) -> None:
        try:
            result = await self._on_thread(self._job_or_rollback, job.run)
        except Exception as exc:
            settle(job.done, translate(exc))
        else:
            settle(job.done, result)

    def _job_or_rollback(self, run: Callable[[], _T]) -> _T:
        self._lock.acquire()
        try:
            return run()
        except Exception:
            self._rollback()
            raise
        finally:
            self._lock.release()

    async def _commit(self, batch: list[Append[_Reply]]) -> None:
        if not batch:
            return
        try:
            plan, recorded_at = await self._on_thread(self._batch_or_rollback, batch)
        except Exception as exc:
            err = translate(exc)
            if len(batch) > 1 and not isinstance(err, StorageUnavailable):
                # Likely one malformed request: retry each alone so only it fails.
                for append in batch:
                    await self._commit([append])
                return
            fail([a.reply for a in batch], err)
            return
        # Only now is the batch durable: acknowledge it, and wake the tailing readers.
        at = micros_to_time(recorded_at)
        self._committed([StoredEvent(r.revision, r.stream, r.type, r.data, at) for r in plan.rows])
        self._watch.advance(plan.head)
        for reply, outcome in plan.outcomes:
            settle(reply, outcome)

    def _batch_or_rollback(self, batch: list[Append[_Reply]]) -> tuple[Plan[_Reply], int]:
        # Writers of the file queue on the lock rather than in SQLite's busy handler, which
        # sleeps in steps (1, 2, 5, 10 .. 100 ms) and would often wake long after the lock was
        # free; busy_timeout stays as the safety net for writers that skip the lock.
        self._lock.acquire()
        try:
            return self._write_batch(batch)
        except Exception:
            self._rollback()
            raise
        finally:
            self._lock.release()

    def _write_batch(self, batch: list[Append[_Reply]]) -> tuple[Plan[_Reply], int]:
        """One transaction for the whole batch, on the connection's thread."""
        self.execute("BEGIN IMMEDIATE")
        # Read under the write lock: another process may have committed (or compacted, which
        # only the horizon then remembers) since this process last looked.
        ((head,),) = self.fetchall(HEAD)
        stale = self._stale(conflict_checks(batch))
        plan = plan_batch(batch, head, stale)
        recorded_at = time_to_micros(datetime.now(UTC))
        rows = plan.rows
        for start in range(0, len(rows), INSERT_ROWS_MAX):
            chunk = rows[start : start + INSERT_ROWS_MAX]
            params = [x for r in chunk for x in (r.revision, r.stream, r.type, r.data, recorded_at)]
            self.execute(insert_rows(len(chunk)), params)
        self.execute("COMMIT")
        return plan, recorded_at

    def _stale(self, checks: list[tuple[str, int]]) -> set[tuple[str, int]]:
        if not checks:
            return set()
        params = [x for check in checks for x in check]
        rows = self.fetchall(stale_query(len(checks)), params)
        return {(stream, base) for stream, base in rows}

    def _rollback(self) -> None:
        # Fails harmlessly when no transaction is open (the error came before BEGIN finished).
        with suppress(sqlite3.Error, ValueError):
            self.execute("ROLLBACK")


def _abandoned(reply: _Reply) -> bool:
    return reply.done()

"""The SQLite backend's one writer task, which owns the write connection.

It runs queued writes one at a time, and commits queued appends in groups (one transaction, one
fsync per group).

What goes into a group, what conflicts and which revisions are given is decided by
storage/group_commit.py; revisions come from the in-memory head, since this task is the file's
only writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiosqlite

from membership.codec import micros_to_time, time_to_micros
from storage.base import NewEvent, StoredEvent
from storage.errors import StorageUnavailable
from storage.group_commit import Append, Plan, conflict_checks, plan_batch, take_batch
from storage.sqlite_schema import INSERT, stale_query, translate
from storage.waiters import HeadWatch, fail, settle

_T = TypeVar("_T")

# Bounds one transaction's size (and the latency of the first request in it); under load the
# next batch is already queued when this one commits, so a larger cap buys little.
_MAX_BATCH = 512

_Reply = asyncio.Future[int]


@dataclass(slots=True)
class _Job(Generic[_T]):
    run: Callable[[], Awaitable[_T]]
    done: asyncio.Future[_T]


class SqliteWriter:
    """Serializes every write on `conn`; `committed` gets each group's events once durable."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        watch: HeadWatch,
        committed: Callable[[list[StoredEvent]], None],
    ) -> None:
        self.conn = conn
        self._watch = watch
        self._committed = committed
        self._pending: deque[Append[_Reply] | _Job[Any]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
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

    async def run(self, job: Callable[[], Awaitable[_T]]) -> _T:
        """Run `job` alone on the write connection, in queue order; rolls back if it fails."""
        self._check_open()
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(job, done))
        self._wakeup.set()
        return await done

    async def aclose(self) -> None:
        """Write everything queued so far, then stop. Idempotent."""
        self._closed = True
        self._wakeup.set()
        await asyncio.wait([self._task])  # it fails what it leaves; nothing to raise here

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
            result = await job.run()
        except Exception as exc:
            await self._rollback()
            settle(job.done, translate(exc))
        else:
            settle(job.done, result)

    async def _commit(self, batch: list[Append[_Reply]]) -> None:
        if not batch:
            return
        try:
            plan, recorded_at = await self._write_batch(batch)
        except Exception as exc:
            await self._rollback()
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

    async def _write_batch(self, batch: list[Append[_Reply]]) -> tuple[Plan[_Reply], int]:
        conn = self.conn
        await conn.execute("BEGIN IMMEDIATE")
        stale = await self._stale(conflict_checks(batch))
        plan = plan_batch(batch, self._watch.head, stale)
        recorded_at = time_to_micros(datetime.now(UTC))
        if plan.rows:
            rows = [(r.revision, r.stream, r.type, r.data, recorded_at) for r in plan.rows]
            await conn.executemany(INSERT, rows)
        await conn.execute("COMMIT")
        return plan, recorded_at

    async def _stale(self, checks: list[tuple[str, int]]) -> set[tuple[str, int]]:
        if not checks:
            return set()
        params = [x for check in checks for x in check]
        rows = await self.conn.execute_fetchall(stale_query(len(checks)), params)
        return {(stream, base) for stream, base in rows}

    async def _rollback(self) -> None:
        # Fails harmlessly when no transaction is open (the error came before BEGIN finished).
        with suppress(sqlite3.Error, ValueError):
            await self.conn.execute("ROLLBACK")


def _abandoned(reply: _Reply) -> bool:
    return reply.done()

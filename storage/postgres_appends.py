"""The PostgreSQL backend's appends: queued, and committed in groups under the appenders' lock.

Appends are serialized by a table lock held until commit (postgres_schema.LOCK_EVENTS), so
without grouping a replica would pay one commit round trip per append, one after another. What
goes into a group, what conflicts and which revisions are given is decided by
storage/group_commit.py; this module only does the I/O around it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from storage.base import NewEvent
from storage.errors import Rejected, StorageError, StorageUnavailable
from storage.group_commit import Append, Plan, conflict_checks, plan_batch, take_batch
from storage.postgres_schema import HEAD, INSERT, LOCK_EVENTS, MOVED_MANY
from storage.waiters import HeadWatch, fail, settle

_MAX_BATCH = 256

_Reply = asyncio.Future[int]


class Appender:
    """Commits queued appends in groups on connections from `connection`, and advances `watch`."""

    def __init__(
        self, connection: Callable[[], AbstractAsyncContextManager[Any]], watch: HeadWatch
    ) -> None:
        self._connection = connection
        self._watch = watch
        self._pending: deque[Append[_Reply]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, stream: str, events: Sequence[NewEvent], base: int | None) -> int:
        """Queue one append and wait until its group committed; raises Conflict or StorageError."""
        done: _Reply = asyncio.get_running_loop().create_future()
        self._pending.append(Append(stream, tuple(events), base, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="postgres-appends")
        return await done

    async def drain(self, timeout: float) -> None:
        """Let the appends queued so far commit (or fail), for at most `timeout` seconds."""
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)

    async def _flush(self) -> None:
        while self._pending:
            batch = take_batch(self._pending, _MAX_BATCH, _abandoned)
            if not batch:
                continue
            try:
                plan = await self._commit(batch)
            except StorageUnavailable as exc:
                fail([a.reply for a in batch], exc)
                continue
            except StorageError as exc:
                if len(batch) == 1:
                    fail([batch[0].reply], Rejected(str(exc)))
                    continue
                # One bad append (content the database refuses) must not fail the others
                # of its group: put each back to be committed alone, in order.
                self._pending.extendleft(reversed(batch))
                await self._commit_alone(len(batch))
                continue
            for reply, outcome in plan.outcomes:
                settle(reply, outcome)

    async def _commit_alone(self, count: int) -> None:
        for _ in range(count):
            append = self._pending.popleft()
            if _abandoned(append.reply):
                continue
            try:
                plan = await self._commit([append])
            except StorageUnavailable as exc:
                fail([append.reply], exc)
                continue
            except StorageError as exc:
                fail([append.reply], Rejected(str(exc)))
                continue
            for reply, outcome in plan.outcomes:
                settle(reply, outcome)

    async def _commit(self, batch: list[Append[_Reply]]) -> Plan[_Reply]:
        async with self._connection() as conn, conn.transaction(isolation="read_committed"):
            await conn.execute(LOCK_EVENTS)
            head = int(await conn.fetchval(HEAD))
            checks = conflict_checks(batch)
            stale: set[tuple[str, int]] = set()
            if checks:
                rows = await conn.fetch(MOVED_MANY, [c[0] for c in checks], [c[1] for c in checks])
                stale = {(r[0], r[1]) for r in rows}
            plan = plan_batch(batch, head, stale)
            if not plan.rows:
                return plan
            # pg_notify is delivered at commit only, so no replica wakes for a rollback.
            await conn.fetchval(
                INSERT,
                [r.revision for r in plan.rows],
                [r.stream for r in plan.rows],
                [r.type for r in plan.rows],
                [r.data for r in plan.rows],
            )
        # Only now is the group durable (synchronous_commit = on): advance, then answer.
        self._watch.advance(plan.head)
        return plan


def _abandoned(reply: _Reply) -> bool:
    return reply.done()

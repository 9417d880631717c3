"""The event-log contract, part: liveness marks, closing, and durability across reopening."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from storage.base import EventLog
from storage.errors import Conflict, StorageUnavailable
from tests.storage.contract_helpers import Opener, ev, read_all, tick


class ClosingContract:
    """Part of EventLogContract, which gives it its fixtures (event_log, reopen)."""

    # -- liveness and closing ----------------------------------------------------------------

    @pytest.mark.anyio
    async def test_mark_alive(self, event_log: EventLog) -> None:
        assert await event_log.last_alive() is None
        first = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
        await event_log.mark_alive(first)
        assert await event_log.last_alive() == first
        second = first + timedelta(minutes=1, microseconds=1)
        await event_log.mark_alive(second)
        assert await event_log.last_alive() == second

    @pytest.mark.anyio
    async def test_aclose_is_idempotent_and_later_calls_fail(self, event_log: EventLog) -> None:
        await event_log.append("a", [ev("1")])
        await event_log.aclose()
        await event_log.aclose()
        now = datetime.now(UTC)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: event_log.append("a", [ev("2")]),
            lambda: event_log.append("a", []),
            lambda: event_log.read(0, 10),
            lambda: event_log.read(0, 10, stream="a"),
            event_log.head,
            event_log.horizon,
            lambda: event_log.wait_for(0),
            lambda: event_log.wait_for(5, timeout=0.01),
            lambda: event_log.save_snapshot(1, b""),
            event_log.load_snapshot,
            lambda: event_log.compact(1, now),
            lambda: event_log.mark_alive(now),
            event_log.last_alive,
        ]
        for call in calls:
            with pytest.raises(StorageUnavailable):
                await call()

    @pytest.mark.anyio
    async def test_aclose_wakes_waiters(self, event_log: EventLog) -> None:
        waiter = asyncio.create_task(event_log.wait_for(0, timeout=10))
        await asyncio.sleep(0.02)
        await event_log.aclose()
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(waiter, 5)

    @pytest.mark.anyio
    async def test_aclose_flushes_pending_appends(self, event_log: EventLog) -> None:
        appends = [asyncio.create_task(event_log.append("a", [ev(str(i))])) for i in range(50)]
        await asyncio.sleep(0)  # every append is queued, none is acknowledged yet
        await event_log.aclose()
        assert sorted(await asyncio.gather(*appends)) == list(range(1, 51))

    # -- durability (persistent backends) ----------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.usefixtures("needs_persistence")
    async def test_reopen_keeps_everything_acknowledged(self, reopen: Opener) -> None:
        log = await reopen()
        await asyncio.gather(*(log.append(f"s{i % 4}", [ev(str(i))]) for i in range(200)))
        await log.append("s0", [ev("x"), ev("y")], base_revision=None)
        await log.save_snapshot(150, b"snap")
        await tick()
        assert await log.compact(100, datetime.now(UTC)) == 99
        alive = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        await log.mark_alive(alive)
        before = await read_all(log)
        await log.aclose()

        log = await reopen()
        assert await log.head() == 202
        assert await log.horizon() == 99
        assert await read_all(log) == before
        snap = await log.load_snapshot()
        assert snap is not None and (snap.revision, snap.blob) == (150, b"snap")
        assert await log.last_alive() == alive
        # Appends continue the sequence; conflicts see the reopened data.
        assert await log.append("s1", [ev("z")]) == 203
        with pytest.raises(Conflict):
            await log.append("s0", [ev("w")], base_revision=200)

    @pytest.mark.anyio
    @pytest.mark.usefixtures("needs_persistence")
    async def test_reopen_after_compacting_everything(self, reopen: Opener) -> None:
        log = await reopen()
        await log.append("a", [ev("1"), ev("2")])
        await log.save_snapshot(2, b"all")
        await tick()
        assert await log.compact(10, datetime.now(UTC)) == 2
        await log.aclose()
        log = await reopen()
        assert (await log.head(), await log.horizon()) == (2, 2)
        assert await log.append("a", [ev("3")]) == 3

    @pytest.mark.anyio
    @pytest.mark.usefixtures("needs_persistence")
    async def test_reopen_keeps_appends_flushed_by_aclose(self, reopen: Opener) -> None:
        log = await reopen()
        appends = [asyncio.create_task(log.append("a", [ev(str(i))])) for i in range(100)]
        await asyncio.sleep(0)
        await log.aclose()
        revisions = await asyncio.gather(*appends)
        log = await reopen()
        got = {e.revision: e.data for e in await read_all(log)}
        assert {revisions[i]: str(i).encode() for i in range(100)} == got

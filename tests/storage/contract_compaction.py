"""The event-log contract, part: snapshots and compaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from storage.base import EventLog
from storage.errors import Conflict
from tests.storage.contract_helpers import ev, read_all, tick


class CompactionContract:
    """Part of EventLogContract, which gives it its fixtures (event_log, reopen)."""

    # -- snapshots and compaction ------------------------------------------------------------

    @pytest.mark.anyio
    async def test_snapshot_newer_replaces_older_is_ignored(self, event_log: EventLog) -> None:
        assert await event_log.load_snapshot() is None
        before = datetime.now(UTC)
        await event_log.save_snapshot(5, b"five")
        snap = await event_log.load_snapshot()
        assert snap is not None
        assert (snap.revision, snap.blob) == (5, b"five")
        assert snap.taken_at.tzinfo is not None
        assert before - timedelta(seconds=1) <= snap.taken_at <= datetime.now(UTC)
        await event_log.save_snapshot(9, b"nine")
        await event_log.save_snapshot(7, b"seven")
        snap = await event_log.load_snapshot()
        assert snap is not None and (snap.revision, snap.blob) == (9, b"nine")
        await event_log.save_snapshot(9, b"nine again")
        snap = await event_log.load_snapshot()
        assert snap is not None and (snap.revision, snap.blob) == (9, b"nine again")
        big = bytes(range(256)) * 4096
        await event_log.save_snapshot(10, big)
        snap = await event_log.load_snapshot()
        assert snap is not None and snap.blob == big

    @pytest.mark.anyio
    async def test_compact_without_snapshot_deletes_nothing(self, event_log: EventLog) -> None:
        await event_log.append("a", [ev("1"), ev("2"), ev("3")])
        await tick()
        assert await event_log.compact(100, datetime.now(UTC) + timedelta(days=1)) == 0
        assert await event_log.horizon() == 0
        assert len(await event_log.read(0, 100)) == 3

    @pytest.mark.anyio
    async def test_compact_bounds(self, event_log: EventLog) -> None:
        for i in range(1, 11):
            await event_log.append(f"s{i % 3}", [ev(str(i))])
            if i == 6:
                await tick()
        events = await event_log.read(0, 100)
        late = events[6].recorded_at  # events 1-6 were recorded before it
        assert events[5].recorded_at < late
        far_future = datetime.now(UTC) + timedelta(days=1)
        await event_log.save_snapshot(8, b"up to 8")

        # before_revision bounds: revisions < 3 go.
        assert await event_log.compact(3, far_future) == 2
        assert await event_log.horizon() == 2
        # Idempotent.
        assert await event_log.compact(3, far_future) == 0
        assert await event_log.compact(2, far_future) == 0
        assert await event_log.horizon() == 2
        # recorded_before bounds: only events recorded strictly before `late` go.
        assert await event_log.compact(100, late) == 4
        assert await event_log.horizon() == 6
        # The snapshot bounds: nothing above its revision goes, the snapshot's own event may.
        assert await event_log.compact(100, far_future) == 2
        assert await event_log.horizon() == 8
        assert await event_log.compact(100, far_future) == 0

        assert [e.revision for e in await event_log.read(0, 100)] == [9, 10]
        assert [e.revision for e in await event_log.read(5, 100)] == [9, 10]
        assert [e.revision for e in await event_log.read(9, 100)] == [10]
        assert [e.data for e in await event_log.read(0, 1)] == [b"9"]
        assert [e.revision for e in await event_log.read(0, 100, stream="s1")] == [10]
        assert await event_log.head() == 10
        # Revisions continue after compaction, and conflicts still see retained events.
        assert await event_log.append("s0", [ev("11")]) == 11
        with pytest.raises(Conflict):
            await event_log.append("s1", [ev("x")], base_revision=9)

    @pytest.mark.anyio
    async def test_compact_everything_never_reuses_revisions(self, event_log: EventLog) -> None:
        await event_log.append("a", [ev("1"), ev("2"), ev("3")])
        await event_log.save_snapshot(3, b"all")
        await tick()
        assert await event_log.compact(100, datetime.now(UTC)) == 3
        assert await event_log.horizon() == 3
        assert await event_log.head() == 3
        assert await event_log.read(0, 100) == []
        assert await event_log.append("a", [ev("4")]) == 4
        assert [e.revision for e in await event_log.read(0, 100)] == [4]

    @pytest.mark.anyio
    async def test_compact_and_appends_interleave(self, event_log: EventLog) -> None:
        async def appender(w: int) -> None:
            for i in range(30):
                await event_log.append(f"s{w}", [ev(f"{w}.{i}")])

        async def compactor() -> None:
            for _ in range(10):
                head = await event_log.head()
                await event_log.save_snapshot(head, b"s")
                await event_log.compact(head, datetime.now(UTC) + timedelta(days=1))
                await asyncio.sleep(0)

        await asyncio.gather(*(appender(w) for w in range(5)), compactor())
        horizon = await event_log.horizon()
        retained = await read_all(event_log)
        assert [e.revision for e in retained] == list(range(horizon + 1, 151))

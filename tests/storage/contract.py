"""The contract every EventLog backend satisfies; test_<backend>.py subclasses it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from storage.base import EventLog, NewEvent, StoredEvent
from storage.errors import Conflict, StorageUnavailable

Opener = Callable[[], Awaitable[EventLog]]


def ev(data: str, type_: str = "Happened") -> NewEvent:
    return NewEvent(type_, data.encode())


async def read_all(log: EventLog, after: int = 0) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    while batch := await log.read(after, 7):
        out.extend(batch)
        after = batch[-1].revision
    return out


async def tick() -> None:
    """Let the clock move, so commits on either side of it get different recorded_at."""
    await asyncio.sleep(0.002)


class EventLogContract:
    # Backends whose data outlives aclose() (so reopening finds it) set this to True.
    persistent: ClassVar[bool] = False

    @pytest.fixture
    def open_log(self) -> Opener:
        """Overridden: a factory opening the *same* storage every time it is called."""
        raise NotImplementedError

    @pytest.fixture
    async def reopen(self, open_log: Opener) -> AsyncIterator[Opener]:
        opened: list[EventLog] = []

        async def tracked() -> EventLog:
            opened.append(await open_log())
            return opened[-1]

        yield tracked
        for log in opened:
            await log.aclose()

    @pytest.fixture
    async def event_log(self, reopen: Opener) -> EventLog:
        return await reopen()

    @pytest.fixture
    def needs_persistence(self) -> None:
        if not self.persistent:
            pytest.skip("backend does not persist across aclose()")

    # -- append and read ---------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_empty_log(self, event_log: EventLog) -> None:
        assert await event_log.head() == 0
        assert await event_log.horizon() == 0
        assert await event_log.read(0, 100) == []
        assert await event_log.read(0, 100, stream="a") == []
        assert await event_log.load_snapshot() is None
        assert await event_log.last_alive() is None

    @pytest.mark.anyio
    async def test_append_returns_last_revision_and_stores_fields(
        self, event_log: EventLog
    ) -> None:
        before = datetime.now(UTC)
        assert await event_log.append("a", [ev("1", "T1"), ev("2", "T2"), ev("3")]) == 3
        assert await event_log.append("b", [ev("4"), ev("5")]) == 5
        after = datetime.now(UTC)
        assert await event_log.head() == 5
        got = await event_log.read(0, 100)
        assert [(e.revision, e.stream, e.type, e.data) for e in got] == [
            (1, "a", "T1", b"1"),
            (2, "a", "T2", b"2"),
            (3, "a", "Happened", b"3"),
            (4, "b", "Happened", b"4"),
            (5, "b", "Happened", b"5"),
        ]
        for event in got:
            assert event.recorded_at.tzinfo is not None
            assert before - timedelta(seconds=1) <= event.recorded_at <= after
        # One append is one commit: its events share their commit time.
        assert got[0].recorded_at == got[1].recorded_at == got[2].recorded_at

    @pytest.mark.anyio
    async def test_revisions_gap_free_and_increasing_across_streams(
        self, event_log: EventLog
    ) -> None:
        rng = random.Random(7)
        expected: list[tuple[str, bytes]] = []
        for i in range(60):
            stream = rng.choice("abcde")
            batch = [ev(f"{i}.{j}") for j in range(rng.randint(1, 4))]
            last = await event_log.append(stream, batch)
            expected += [(stream, e.data) for e in batch]
            assert last == len(expected)
        got = await read_all(event_log)
        assert [e.revision for e in got] == list(range(1, len(expected) + 1))
        assert [(e.stream, e.data) for e in got] == expected

    @pytest.mark.anyio
    async def test_read_after_and_limit(self, event_log: EventLog) -> None:
        await event_log.append("a", [ev(str(i)) for i in range(1, 11)])
        assert [e.revision for e in await event_log.read(0, 3)] == [1, 2, 3]
        assert [e.revision for e in await event_log.read(3, 3)] == [4, 5, 6]
        assert [e.revision for e in await event_log.read(8, 100)] == [9, 10]
        assert await event_log.read(10, 100) == []
        assert await event_log.read(50, 100) == []
        assert await event_log.read(0, 0) == []
        assert await event_log.read(0, -1) == []
        assert [e.data for e in await event_log.read(4, 1)] == [b"5"]

    @pytest.mark.anyio
    async def test_read_with_stream_filter(self, event_log: EventLog) -> None:
        for i in range(1, 13):
            await event_log.append("even" if i % 2 == 0 else "odd", [ev(str(i))])
        evens = await event_log.read(0, 100, stream="even")
        assert [e.revision for e in evens] == [2, 4, 6, 8, 10, 12]
        assert {e.stream for e in evens} == {"even"}
        # `limit` counts matching events only; `after` is a global revision.
        assert [e.revision for e in await event_log.read(0, 2, stream="odd")] == [1, 3]
        assert [e.revision for e in await event_log.read(6, 2, stream="odd")] == [7, 9]
        assert [e.revision for e in await event_log.read(5, 100, stream="even")] == [6, 8, 10, 12]
        assert await event_log.read(0, 100, stream="none") == []
        assert await event_log.read(12, 100, stream="even") == []

    @pytest.mark.anyio
    async def test_empty_append_returns_head(self, event_log: EventLog) -> None:
        assert await event_log.append("a", []) == 0
        await event_log.append("a", [ev("1"), ev("2")])
        assert await event_log.append("b", []) == 2
        assert await event_log.append("a", [], base_revision=2) == 2
        assert await event_log.head() == 2
        assert len(await event_log.read(0, 100)) == 2

    # -- optimistic concurrency --------------------------------------------------------------

    @pytest.mark.anyio
    async def test_base_revision_conflict(self, event_log: EventLog) -> None:
        assert await event_log.append("a", [ev("a1")], base_revision=0) == 1
        assert await event_log.append("a", [ev("a2")], base_revision=1) == 2
        assert await event_log.append("b", [ev("b1")], base_revision=0) == 3
        # Events of other streams above the base do not conflict.
        assert await event_log.append("a", [ev("a3")], base_revision=2) == 4
        for stale in (0, 1, 2, 3):
            with pytest.raises(Conflict):
                await event_log.append("a", [ev("x"), ev("y")], base_revision=stale)
            with pytest.raises(Conflict):
                await event_log.append("a", [], base_revision=stale)
        assert await event_log.head() == 4
        assert [e.data for e in await read_all(event_log)] == [b"a1", b"a2", b"b1", b"a3"]
        # A base at or above the stream's newest event is fine, as is no base at all.
        assert await event_log.append("a", [ev("a4")], base_revision=4) == 5
        assert await event_log.append("a", [ev("a5")], base_revision=100) == 6
        assert await event_log.append("a", [ev("a6")], base_revision=None) == 7
        assert await event_log.append("a", [ev("a7")]) == 8
        assert await event_log.append("new", [ev("n1")], base_revision=0) == 9

    @pytest.mark.anyio
    async def test_concurrent_appends_on_one_base_exactly_one_wins(
        self, event_log: EventLog
    ) -> None:
        await event_log.append("a", [ev("seed")])
        await event_log.append("other", [ev("other")])

        async def attempt(i: int) -> int | None:
            try:
                return await event_log.append("a", [ev(f"w{i}")], base_revision=2)
            except Conflict:
                return None

        async def unrelated(i: int) -> int | None:
            # Same base, other streams: these ride in the same batches and must not conflict.
            return await event_log.append(f"b{i}", [ev(f"b{i}")], base_revision=2)

        results = await asyncio.gather(*(f(i) for i in range(25) for f in (attempt, unrelated)))
        wins = [r for r in results[0::2] if r is not None]
        assert len(wins) == 1
        wins_data = f"w{results[0::2].index(wins[0])}".encode()
        assert all(r is not None for r in results[1::2])
        a_events = await event_log.read(0, 100, stream="a")
        assert [(e.revision, e.data) for e in a_events] == [(1, b"seed"), (wins[0], wins_data)]
        assert await event_log.head() == 2 + 1 + 25

    # -- waiting and tailing -----------------------------------------------------------------

    @pytest.mark.anyio
    async def test_wait_for_returns_at_once_when_head_is_past(self, event_log: EventLog) -> None:
        await event_log.append("a", [ev("1"), ev("2")])
        assert await event_log.wait_for(0) is True
        assert await event_log.wait_for(1, timeout=0) is True
        assert await event_log.wait_for(-5, timeout=0.01) is True

    @pytest.mark.anyio
    async def test_wait_for_times_out(self, event_log: EventLog) -> None:
        assert await event_log.wait_for(0, timeout=0.05) is False
        await event_log.append("a", [ev("1")])
        assert await event_log.wait_for(1, timeout=0.05) is False
        assert await event_log.wait_for(1, timeout=0) is False

    @pytest.mark.anyio
    async def test_wait_for_wakes_on_append_from_another_task(self, event_log: EventLog) -> None:
        await event_log.append("a", [ev("1")])
        waiters = [asyncio.create_task(event_log.wait_for(1, timeout=10)) for _ in range(5)]
        beyond = asyncio.create_task(event_log.wait_for(2, timeout=10))
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in [*waiters, beyond])
        await event_log.append("b", [ev("2")])
        assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True] * 5
        # A waiter for a later revision keeps waiting through earlier commits.
        await asyncio.sleep(0.05)
        assert not beyond.done()
        await event_log.append("b", [ev("3")])
        assert await asyncio.wait_for(beyond, 5) is True

    @pytest.mark.anyio
    async def test_tailing_readers_never_miss_an_event(self, event_log: EventLog) -> None:
        """Readers tailing with read + wait_for see every revision once, in order, no gaps.

        Appends race from many tasks (several streams, batches of 1-3 events, some with a
        base revision) while several readers tail with small pages; every acknowledged append
        must be found at exactly the revision it returned.
        """
        writers, appends = 20, 50
        acked: dict[int, tuple[str, list[bytes]]] = {}

        async def writer(w: int) -> None:
            rng = random.Random(w)
            for i in range(appends):
                stream = f"s{rng.randrange(5)}"
                batch = [ev(f"{w}/{i}/{j}") for j in range(rng.randint(1, 3))]
                base = None if rng.random() < 0.8 else 10**9
                last = await event_log.append(stream, batch, base_revision=base)
                acked[last] = (stream, [e.data for e in batch])
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        async def tail(page: int) -> list[StoredEvent]:
            seen: list[StoredEvent] = []
            position = 0
            while True:
                batch = await event_log.read(position, page)
                for event in batch:
                    assert event.revision == position + 1, "gap or reordering seen by a reader"
                    position = event.revision
                seen += batch
                if seen and seen[-1].stream == "end":
                    return seen
                if not batch:
                    await event_log.wait_for(position, timeout=5)
                    # wait_for may answer at once (head can run ahead of what is readable);
                    # yield so a backend that never blocks cannot starve the writers.
                    await asyncio.sleep(0)

        async with asyncio.timeout(60):
            readers = [asyncio.create_task(tail(page)) for page in (1, 7, 100)]
            await asyncio.gather(*(writer(w) for w in range(writers)))
            # Appended only after every other append was acknowledged, so it comes last.
            end = await event_log.append("end", [ev("end")])
            views = await asyncio.gather(*readers)

        total = sum(len(data) for _, data in acked.values()) + 1
        assert len(acked) == writers * appends
        assert await event_log.head() == end == total
        for seen in views:
            assert [e.revision for e in seen] == list(range(1, total + 1))
        by_revision = {e.revision: e for e in views[0]}
        for last, (stream, data) in acked.items():
            mine = [by_revision[r] for r in range(last - len(data) + 1, last + 1)]
            assert [e.data for e in mine] == data
            assert {e.stream for e in mine} == {stream}
        # Every reader saw the very same events.
        assert views[0] == views[1] == views[2]

    @pytest.mark.anyio
    async def test_many_concurrent_appends_all_succeed(self, event_log: EventLog) -> None:
        n = 1000
        results = await asyncio.gather(
            *(event_log.append(f"c{i % 13}", [ev(str(i))]) for i in range(n))
        )
        assert sorted(results) == list(range(1, n + 1))
        got = {e.revision: e for e in await event_log.read(0, 10 * n)}
        assert len(got) == n
        for i, revision in enumerate(results):
            assert got[revision].data == str(i).encode()
            assert got[revision].stream == f"c{i % 13}"

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

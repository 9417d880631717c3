"""The contract every EventLog backend satisfies; test_<backend>.py subclasses it.

Its tests are grouped by concern in contract_*.py; EventLogContract gathers them all.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from storage.base import EventLog
from storage.errors import Conflict
from tests.storage.contract_closing import ClosingContract
from tests.storage.contract_compaction import CompactionContract
from tests.storage.contract_helpers import Opener, ev, read_all, tick
from tests.storage.contract_tailing import TailingContract

__all__ = ["EventLogContract", "Opener", "ev", "read_all", "tick"]


class EventLogContract(TailingContract, CompactionContract, ClosingContract):
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

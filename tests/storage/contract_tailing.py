"""The event-log contract, part: waiting for the head and tailing the log."""

from __future__ import annotations

import asyncio
import random

import pytest

from storage.base import EventLog, StoredEvent
from tests.storage.contract_helpers import ev


class TailingContract:
    """Part of EventLogContract, which gives it its fixtures (event_log, reopen)."""

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

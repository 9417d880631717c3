"""The one wait_for (HeadWatch) and the reply helpers the backends share."""

from __future__ import annotations

import asyncio

import pytest

from storage.errors import StorageUnavailable
from storage.waiters import HeadWatch, fail, settle

pytestmark = pytest.mark.anyio


async def test_advance_wakes_only_waiters_it_passes() -> None:
    watch = HeadWatch(3)
    assert await watch.wait_for(2, timeout=0)
    low = asyncio.create_task(watch.wait_for(3, timeout=5))
    high = asyncio.create_task(watch.wait_for(5, timeout=5))
    await asyncio.sleep(0.01)
    watch.advance(4)
    assert await low is True
    await asyncio.sleep(0.01)
    assert not high.done()
    watch.advance(2)  # never backwards
    assert watch.head == 4
    watch.advance(6)
    assert await high is True


async def test_timeout_is_one_deadline_across_wake_ups() -> None:
    watch = HeadWatch()
    waiter = asyncio.create_task(watch.wait_for(10, timeout=0.2))
    for head in range(1, 6):
        await asyncio.sleep(0.05)
        watch.advance(head)  # wakes the waiter, which must not restart its clock
    assert await asyncio.wait_for(waiter, 1) is False


async def test_close_fails_waiters_now_and_later() -> None:
    watch = HeadWatch(5)
    waiter = asyncio.create_task(watch.wait_for(5))
    await asyncio.sleep(0.01)
    watch.close()
    with pytest.raises(StorageUnavailable):
        await waiter
    with pytest.raises(StorageUnavailable):
        await watch.wait_for(0)  # closed is closed, even when the answer is known


async def test_refresh_finds_heads_that_nobody_announced() -> None:
    watch = HeadWatch()
    database = {"head": 0}
    reads = 0

    async def refresh() -> int:
        nonlocal reads
        reads += 1
        return database["head"]

    waiter = asyncio.create_task(watch.wait_for(0, timeout=5, refresh=refresh, poll_interval=0.02))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    database["head"] = 1  # committed elsewhere; the notification was lost
    assert await asyncio.wait_for(waiter, 1) is True
    assert reads >= 2
    assert not await watch.wait_for(1, timeout=0.05, refresh=refresh, poll_interval=0.01)


async def test_wake_makes_waiters_look_again() -> None:
    watch = HeadWatch()
    database = {"head": 0}

    async def refresh() -> int:
        return database["head"]

    waiter = asyncio.create_task(watch.wait_for(0, timeout=5, refresh=refresh, poll_interval=60))
    await asyncio.sleep(0.01)
    database["head"] = 1
    watch.wake()  # e.g. the LISTEN connection came back
    assert await asyncio.wait_for(waiter, 1) is True


async def test_settle_answers_once_and_skips_callers_that_gave_up() -> None:
    loop = asyncio.get_running_loop()
    answered, errored, gone = loop.create_future(), loop.create_future(), loop.create_future()
    gone.cancel()
    settle(answered, 7)
    settle(answered, 8)
    fail([errored, gone], StorageUnavailable("down"))
    assert answered.result() == 7
    with pytest.raises(StorageUnavailable):
        errored.result()
    assert gone.cancelled()

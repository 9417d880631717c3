"""A watcher's subscription: woken by an offer or a close, not by time; full queues lag."""

from __future__ import annotations

import asyncio

import pytest

from discovery.core.changes import Change
from discovery.core.hub import Subscription

pytestmark = pytest.mark.anyio


async def test_a_quiet_wait_times_out() -> None:
    sub = Subscription("c", capacity=4)
    assert await sub.wait(0.01) is False
    assert await sub.wait(0.01) is False  # and can wait again


async def test_an_offer_wakes_the_waiter() -> None:
    sub = Subscription("c", capacity=4)
    waiting = asyncio.ensure_future(sub.wait(None))
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.offer(Change(1, "a", None))
    assert await waiting is True
    assert [c.revision for c in sub.queue] == [1]
    # Something queued: no waiting at all.
    assert await sub.wait(0) is True


async def test_close_wakes_the_waiter() -> None:
    sub = Subscription("c", capacity=4)
    waiting = asyncio.ensure_future(sub.wait(5.0))
    await asyncio.sleep(0)
    sub.close()
    assert await waiting is True
    assert sub.closed


async def test_a_full_queue_is_dropped_and_marked_lagging() -> None:
    sub = Subscription("c", capacity=2)
    for revision in (1, 2, 3):
        sub.offer(Change(revision, "a", None))
    assert sub.lagging and not sub.queue
    sub.offer(Change(4, "a", None))  # ignored until the stream caught up from the log
    assert not sub.queue
    assert await sub.wait(0) is True

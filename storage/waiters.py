"""Waiting shared by the backends: for the head to pass a revision, and for an append's outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from storage.errors import StorageUnavailable

_T = TypeVar("_T")


class HeadWatch:
    """The newest head this process knows was committed, and the tasks waiting for it to move."""

    def __init__(self, head: int = 0) -> None:
        self._head = head
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def head(self) -> int:
        return self._head

    def advance(self, head: int) -> None:
        """Record a committed head; wakes the waiters when it moved forward."""
        if head > self._head:
            self._head = head
            self.wake()

    def wake(self) -> None:
        """Make every waiter look again (e.g. after notifications may have been lost)."""
        # Swap, then set: waiters holding the old event wake; later waiters get the new one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """Fail every waiter, now and later, with StorageUnavailable. Idempotent."""
        self._closed = True
        self.wake()

    async def wait_for(
        self,
        after: int,
        timeout: float | None = None,
        *,
        refresh: Callable[[], Awaitable[int]] | None = None,
        poll_interval: float | None = None,
    ) -> bool:
        """Wait until the head is above `after`; True when it is, False on timeout.

        `refresh` reads the head from the database, for backends where other processes commit
        and their notifications can be lost: it is asked on every round, and no round waits
        longer than `poll_interval`. Raises StorageUnavailable once closed.
        """
        loop = asyncio.get_running_loop()
        # One deadline for the whole wait, however many wake-ups it takes.
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Closed is closed, even when the answer is already known.
            if self._closed:
                raise StorageUnavailable("event log is closed")
            # Take the event before reading the head: a wake-up arriving between the read and
            # the wait sets this very event, so it cannot be lost.
            changed = self._changed
            if self._head > after or (refresh is not None and await refresh() > after):
                return True
            wait = poll_interval
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                wait = remaining if wait is None else min(wait, remaining)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()


def settle(reply: asyncio.Future[_T], outcome: _T | BaseException) -> None:
    """Answer a caller unless it gave up already; an exception outcome is raised to it."""
    if reply.done():
        return
    if isinstance(outcome, BaseException):
        reply.set_exception(outcome)
    else:
        reply.set_result(outcome)


def fail(replies: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """Raise `exc` to every caller still waiting."""
    for reply in replies:
        settle(reply, exc)

"""The contract of an opened storage (storage.open_storage): its leader election and its close.

test_<backend>.py subclasses StorageContract. Backends whose storage several processes share
(`shared = True`) must also let exactly one of them lead at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import anyio
import pytest

from storage import Storage
from storage.errors import StorageUnavailable

StorageOpener = Callable[[], Awaitable[Storage]]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> bool:
    """True once `check` is, within `timeout` seconds."""
    # A PostgreSQL server releases a session's locks when its backend exits, a moment after the
    # client closed the socket.
    with anyio.move_on_after(timeout):
        while not await check():
            await anyio.sleep(0.05)
        return True
    return False


class StorageContract:
    # Backends opened by several processes at once (each contending for leadership) set this.
    shared: ClassVar[bool] = False

    @pytest.fixture
    def open_storage(self) -> StorageOpener:
        """Overridden: a factory opening the *same* storage every time it is called."""
        raise NotImplementedError

    @pytest.fixture
    async def contender(self, open_storage: StorageOpener) -> AsyncIterator[StorageOpener]:
        opened: list[Storage] = []

        async def tracked() -> Storage:
            opened.append(await open_storage())
            return opened[-1]

        yield tracked
        for storage in opened:
            await storage.aclose()

    @pytest.fixture
    def needs_sharing(self) -> None:
        if not self.shared:
            pytest.skip("backend has a single user: nobody to contend with")

    @pytest.mark.anyio
    async def test_leadership_acquire_hold_release(self, contender: StorageOpener) -> None:
        leadership = (await contender()).leadership
        assert not await leadership.holds()
        assert await leadership.acquire()
        assert await leadership.acquire()  # idempotent while held
        assert await leadership.holds()
        await leadership.release()
        assert not await leadership.holds()
        await leadership.release()  # idempotent
        assert not await leadership.holds()
        assert await leadership.acquire()  # and it can be taken again
        assert await leadership.holds()

    @pytest.mark.anyio
    async def test_aclose_gives_leadership_up_and_closes_the_log(
        self, contender: StorageOpener
    ) -> None:
        storage = await contender()
        assert await storage.leadership.acquire()
        await storage.aclose()
        await storage.aclose()  # idempotent
        assert not await storage.leadership.holds()
        with pytest.raises(StorageUnavailable):
            await storage.log.head()

    @pytest.mark.anyio
    @pytest.mark.usefixtures("needs_sharing")
    async def test_one_leader_among_processes_sharing_the_storage(
        self, contender: StorageOpener
    ) -> None:
        a, b = (await contender()).leadership, (await contender()).leadership
        assert await a.acquire()
        assert not await b.acquire()
        assert (await a.holds(), await b.holds()) == (True, False)
        await a.release()
        assert await eventually(b.acquire)
        assert not await a.acquire()
        assert (await a.holds(), await b.holds()) == (False, True)

    @pytest.mark.anyio
    @pytest.mark.usefixtures("needs_sharing")
    async def test_closing_the_leader_lets_another_lead(self, contender: StorageOpener) -> None:
        leader, other = await contender(), await contender()
        assert await leader.leadership.acquire()
        assert not await other.leadership.acquire()
        await leader.aclose()
        assert await eventually(other.leadership.acquire)

"""Which replica runs GC, snapshots and compaction: exactly one at a time."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from storage.base import EventLog


class Leadership(Protocol):
    async def acquire(self) -> bool:
        """Try to become leader; True if this replica now leads. Never blocks for long."""
        ...

    async def holds(self) -> bool:
        """True while leadership is still held (the lock's session is alive)."""
        ...

    async def release(self) -> None:
        """Give leadership up. Idempotent."""
        ...


class SoleLeader:
    """A single-process backend (SQLite, memory): this process always leads."""

    async def acquire(self) -> bool:
        return True

    async def holds(self) -> bool:
        return True

    async def release(self) -> None:
        return None


@runtime_checkable
class LeaderLocks(Protocol):
    """What a shared backend offers for leader election (PostgreSQL advisory locks)."""

    async def try_acquire_leadership(self, name: str) -> bool: ...

    async def is_leader(self, name: str) -> bool: ...

    async def release_leadership(self, name: str) -> None: ...


class AdvisoryLockLeader:
    """Leadership through the backend's advisory lock (PostgreSQL)."""

    NAME = "discovery-leader"

    def __init__(self, log: LeaderLocks) -> None:
        self._log = log
        self._held = False

    async def acquire(self) -> bool:
        self._held = bool(await self._log.try_acquire_leadership(self.NAME))
        return self._held

    async def holds(self) -> bool:
        if not self._held:
            return False
        self._held = bool(await self._log.is_leader(self.NAME))
        return self._held

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._log.release_leadership(self.NAME)


def leadership_for(log: EventLog) -> Leadership:
    """The leadership scheme the backend supports."""
    if isinstance(log, LeaderLocks):
        return AdvisoryLockLeader(log)
    return SoleLeader()

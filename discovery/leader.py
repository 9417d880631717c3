"""Which replica runs GC, snapshots and compaction: exactly one at a time."""

from __future__ import annotations

from typing import Protocol

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


class AdvisoryLockLeader:
    """Leadership through the backend's advisory lock (PostgreSQL)."""

    NAME = "discovery-leader"

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._held = False

    async def acquire(self) -> bool:
        self._held = bool(await self._log.try_acquire_leadership(self.NAME))  # type: ignore[attr-defined]
        return self._held

    async def holds(self) -> bool:
        if not self._held:
            return False
        self._held = bool(await self._log.is_leader(self.NAME))  # type: ignore[attr-defined]
        return self._held

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._log.release_leadership(self.NAME)  # type: ignore[attr-defined]


def leadership_for(log: EventLog) -> Leadership:
    """The leadership scheme the backend supports."""
    if hasattr(log, "try_acquire_leadership"):
        return AdvisoryLockLeader(log)
    return SoleLeader()

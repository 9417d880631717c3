"""Leader election: the protocol, and the leader of a storage that has one user.

Of the processes sharing one storage, exactly one at a time runs the leader-only work (GC,
snapshots, compaction).

Each backend brings the scheme that fits how it is shared: a process that is the storage's only
user leads alone (`SoleLeader`, for memory); processes sharing a SQLite file contend for a lock
on a file beside it (storage/file_leadership.py); replicas sharing a PostgreSQL database contend
for an advisory lock (storage/postgres_leadership.py).
"""

from __future__ import annotations

from typing import Protocol


class Leadership(Protocol):
    async def acquire(self) -> bool:
        """Try to become leader; True if this process now leads. Never blocks for long.

        Idempotent while held. Raises StorageUnavailable when the lock cannot be reached.
        """
        ...

    async def holds(self) -> bool:
        """True while leadership is still held; check before each round of leader-only work.

        A lock lost behind our back (its session died) reads False and is forgotten. Never
        raises a storage error.
        """
        ...

    async def release(self) -> None:
        """Give leadership up, if held, so another process can take it. Idempotent."""
        ...


class SoleLeader:
    """The storage has this process as its only user (memory): acquiring always wins."""

    def __init__(self) -> None:
        self._held = False

    async def acquire(self) -> bool:
        self._held = True
        return True

    async def holds(self) -> bool:
        return self._held

    async def release(self) -> None:
        self._held = False

"""Leader election for processes sharing one SQLite file: a lock on a file beside it."""

from __future__ import annotations

from storage.errors import StorageUnavailable
from storage.file_lock import FileLock


def leader_lock_path(database: str) -> str:
    """The lock file whose holder leads the processes sharing the database at `database`."""
    return f"{database}-leader.lock"


class FileLockLeadership:
    """Leadership as a non-blocking `flock` on `path`, through a descriptor of its own.

    The kernel drops the lock when release() closes the descriptor or when the holding process
    dies however it dies, and another process's next acquire() wins; nothing can take the lock
    from a live holder, so holds() only forgets it on release(). Processes contend only with
    others using the same `path`, which must be on a local file system (flock(2)).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock: FileLock | None = None

    async def acquire(self) -> bool:
        # Non-blocking calls: cheap enough to make on the event loop.
        if self._lock is not None:
            return True
        try:
            lock = FileLock(self._path)
        except OSError as exc:
            raise StorageUnavailable(f"cannot open the leader lock {self._path!r}: {exc}") from exc
        try:
            held = lock.acquire(blocking=False)
        except OSError as exc:
            lock.close()
            raise StorageUnavailable(f"cannot lock {self._path!r}: {exc}") from exc
        if not held:
            lock.close()  # no descriptor kept open by a process that does not lead
            return False
        self._lock = lock
        return True

    async def holds(self) -> bool:
        return self._lock is not None

    async def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

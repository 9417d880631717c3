"""An advisory lock on a file beside a database, for processes sharing that database.

`flock` locks belong to an open file description, so two `FileLock`s on one path conflict even
inside one process, and the kernel drops a lock when its holder dies (no stale lock files to
clean up). See flock(2).
"""

from __future__ import annotations

import fcntl
import os


class FileLock:
    """One `flock` on `path` (created if missing), through a descriptor of its own."""

    def __init__(self, path: str) -> None:
        # The file holds nothing; 0o644 lets other users of a shared database take the lock too.
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; True once held. Without `blocking`, False at once when it is taken.

        Blocking in flock releases the GIL, so a thread waiting here costs the event loop
        nothing. Raises OSError once closed.
        """
        if self._fd is None:
            raise OSError("lock file is closed")
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(self._fd, flags)
        except BlockingIOError:
            return False
        self._held = True
        return True

    def release(self) -> None:
        """Give the lock up if held. Idempotent."""
        if self._held and self._fd is not None:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release and close the descriptor. Idempotent."""
        fd, self._fd = self._fd, None
        self._held = False
        if fd is not None:
            os.close(fd)  # closing the last descriptor of the description drops the lock

"""Pick a backend from a storage URL, with the leader election that fits it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from storage.base import EventLog
from storage.errors import InvalidStorageURL
from storage.leadership import Leadership, SoleLeader


@dataclass(frozen=True, slots=True)
class Storage:
    """An opened storage: its event log, and how the processes sharing it elect a leader."""

    log: EventLog
    leadership: Leadership

    async def aclose(self) -> None:
        """Give up leadership, then close the log. Idempotent."""
        try:
            await self.leadership.release()
        finally:
            await self.log.aclose()


async def open_storage(url: str) -> Storage:
    """Open the storage named by `url`; raises InvalidStorageURL or StorageUnavailable.

    sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql://user@host/db,
    memory:// (tests only). SQLite and PostgreSQL may be shared by several processes, which
    elect their leader through the returned leadership; memory is led by its one process.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from storage.memory import MemoryEventLog

        return Storage(MemoryEventLog(), SoleLeader())
    if scheme == "sqlite":
        from storage.file_leadership import FileLockLeadership, leader_lock_path
        from storage.sqlite import SqliteEventLog

        path = url[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise InvalidStorageURL(f"sqlite URL needs a path: {url!r}")
        # sqlite:///rel.db -> "rel.db", sqlite:////abs.db -> "/abs.db"
        log = await SqliteEventLog.open(path[1:])
        return Storage(log, FileLockLeadership(leader_lock_path(path[1:])))
    if scheme in ("postgresql", "postgres"):
        from storage.postgres import PostgresEventLog
        from storage.postgres_leadership import AdvisoryLockLeadership

        return Storage(await PostgresEventLog.open(url), AdvisoryLockLeadership(url))
    raise InvalidStorageURL(f"unknown storage URL scheme in {url!r}")

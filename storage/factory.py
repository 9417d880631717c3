"""Pick a backend from a storage URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from storage.base import EventLog
from storage.errors import InvalidStorageURL


async def open_event_log(url: str) -> EventLog:
    """Open the event log named by `url`; raises InvalidStorageURL or StorageUnavailable.

    sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql://user@host/db,
    memory:// (tests only).
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from storage.memory import MemoryEventLog

        return MemoryEventLog()
    if scheme == "sqlite":
        from storage.sqlite import SqliteEventLog

        path = url[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise InvalidStorageURL(f"sqlite URL needs a path: {url!r}")
        # sqlite:///rel.db -> "rel.db", sqlite:////abs.db -> "/abs.db"
        return await SqliteEventLog.open(path[1:])
    if scheme in ("postgresql", "postgres"):
        from storage.postgres import PostgresEventLog

        return await PostgresEventLog.open(url)
    raise InvalidStorageURL(f"unknown storage URL scheme in {url!r}")

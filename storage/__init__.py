"""The event log and leader election: one protocol each, backends chosen by URL."""

from __future__ import annotations

from storage.base import EventLog, NewEvent, Snapshot, StoredEvent
from storage.errors import Conflict, StorageError, StorageUnavailable
from storage.factory import Storage, open_storage
from storage.leadership import Leadership, SoleLeader

__all__ = [
    "Conflict",
    "EventLog",
    "Leadership",
    "NewEvent",
    "Snapshot",
    "SoleLeader",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "StoredEvent",
    "open_storage",
]

"""The event log: one protocol, one module per backend, chosen by URL."""

from storage.base import EventLog, NewEvent, Snapshot, StoredEvent
from storage.errors import Conflict, StorageError, StorageUnavailable
from storage.factory import open_event_log

__all__ = [
    "Conflict",
    "EventLog",
    "NewEvent",
    "Snapshot",
    "StorageError",
    "StorageUnavailable",
    "StoredEvent",
    "open_event_log",
]

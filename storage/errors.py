"""Errors of the storage layer; no driver exception escapes a backend.

StorageError
├── Conflict            an append's base revision is stale: the stream moved on meanwhile
├── StorageUnavailable  the database cannot be reached or the log is closed
├── Rejected            the database refused this append's content; the log itself is fine
└── InvalidStorageURL   the storage URL names no known backend or is malformed
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage error."""


class Conflict(StorageError):
    """An event of the stream was committed after the append's base revision."""


class StorageUnavailable(StorageError):
    """The backend cannot serve the call now (connection lost, closed); retry later."""


class Rejected(StorageError):
    """The database refused this one append (its content, not an outage); others go on."""


class InvalidStorageURL(StorageError):
    """The storage URL is not one of sqlite:///..., postgresql://..., memory://."""

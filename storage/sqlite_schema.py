"""The SQLite backend's tables and statements, its time encoding and its error mapping."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from storage.errors import StorageError, StorageUnavailable

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream, revision);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, blob BLOB NOT NULL,
    taken_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# The newest revision ever given: after compacting every event MAX(revision) forgets how far the
# log went, and the horizon remembers, so revisions are never reused.
HEAD = """SELECT max(COALESCE((SELECT MAX(revision) FROM events), 0),
    COALESCE((SELECT value FROM meta WHERE key = 'horizon'), 0))"""
HORIZON = "SELECT COALESCE((SELECT value FROM meta WHERE key = 'horizon'), 0)"
COLUMNS = "SELECT revision, stream, type, data, recorded_at FROM events"
INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?)"
# Rows per multi-row INSERT: 5 parameters each, well under SQLite's 32766 variables.
INSERT_ROWS_MAX = 256


def insert_rows(rows: int) -> str:
    """One INSERT of `rows` events: one statement step, so one hand-back of the GIL by the
    writer thread instead of one per row (each can wait a whole switch interval)."""
    return "INSERT INTO events VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * rows)


SAVE_SNAPSHOT = """INSERT INTO snapshot VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
    revision = excluded.revision, blob = excluded.blob, taken_at = excluded.taken_at
    WHERE excluded.revision >= snapshot.revision"""
LAST_ALIVE = "SELECT value FROM meta WHERE key = 'last_alive'"
MARK_ALIVE = """INSERT INTO meta VALUES ('last_alive', ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value"""
RAISE_HORIZON = """INSERT INTO meta VALUES ('horizon', ?)
    ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)"""


def stale_query(pairs: int) -> str:
    """Which of `pairs` (stream, base) parameter pairs some committed event of the stream is above.

    One statement for a whole batch; each EXISTS is a seek on events_by_stream.
    """
    values = ", ".join(["(?, ?)"] * pairs)
    return (
        f"WITH req(stream, base) AS (VALUES {values}) SELECT stream, base FROM req"
        " WHERE EXISTS (SELECT 1 FROM events e"
        " WHERE e.stream = req.stream AND e.revision > req.base)"
    )


def translate(exc: Exception) -> StorageError:
    """The storage error for a driver error."""
    # OperationalError covers locked, busy, I/O and disk-full errors; aiosqlite raises
    # ValueError once its connection is closed; OSError comes from the writer's lock file (e.g.
    # ENOLCK). Anything else is a bug or a corrupt file.
    unavailable = isinstance(exc, sqlite3.OperationalError | ValueError | OSError)
    err = (StorageUnavailable if unavailable else StorageError)(f"sqlite: {exc}")
    err.__cause__ = exc
    return err


@contextmanager
def driver_errors() -> Iterator[None]:
    """Let no sqlite3 or aiosqlite exception escape: re-raise it as a storage error."""
    try:
        yield
    except (sqlite3.Error, ValueError) as exc:
        raise translate(exc) from exc

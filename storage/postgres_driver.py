"""The PostgreSQL backend's use of asyncpg: error mapping, connections, advisory-lock keys.

No asyncpg or socket exception leaves storage/: they become storage errors here. Connections
are closed without hanging, and lock keys are stable across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import asyncpg

from storage.errors import Conflict, StorageError, StorageUnavailable

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
PING_TIMEOUT = 5.0

# Connection exceptions (08), insufficient resources (53: too many connections) and operator
# intervention (57P: shutdown, crash, starting up) are outages, worth a retry later.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for `name`."""
    # Python's hash() differs between processes; advisory keys must not.
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


def _translate(exc: Exception) -> StorageError | None:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(str(exc))
    if isinstance(exc, asyncpg.PostgresError):
        outage = str(exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES)
        return (StorageUnavailable if outage else StorageError)(str(exc))
    # asyncpg reports a closed connection or a closing pool as a bare InterfaceError; its
    # ValueError subclasses are bad arguments, i.e. bugs, not outages.
    if isinstance(exc, OSError | asyncpg.InterfaceError) and not isinstance(exc, ValueError):
        return StorageUnavailable(str(exc) or type(exc).__name__)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return StorageError(str(exc))
    return None


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """Let no asyncpg or socket exception escape: re-raise it as a storage error."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        storage_error = _translate(exc)
        if storage_error is None:
            raise
        raise storage_error from exc


def terminate(conn: Any) -> None:
    """Drop a connection at once, whatever state it is in."""
    with contextlib.suppress(Exception):
        conn.terminate()


async def close(conn: Any) -> None:
    """Close a connection politely, or drop it if that does not work soon."""
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT)
    except Exception:
        terminate(conn)


async def connect(url: str) -> Any:
    """A connection of its own (not pooled); raises StorageUnavailable."""
    with mapped():
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)

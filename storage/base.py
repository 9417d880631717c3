"""The event log protocol every backend implements, and its record types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type name and encoded payload."""

    type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed event. `revision` is global, gap-free and strictly increasing."""

    revision: int
    stream: str
    type: str
    data: bytes
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A projection snapshot: the state after folding every event up to `revision`."""

    revision: int
    blob: bytes
    taken_at: datetime


class EventLog(Protocol):
    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        """Append atomically and durably; return the last revision. Not idempotent.

        With `base_revision`, raise Conflict (appending nothing) if any event of `stream`
        has a revision above it. An empty `events` appends nothing and returns head().
        """
        ...

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> list[StoredEvent]:
        """Up to `limit` committed events with revision > `after`, in revision order."""
        ...

    async def head(self) -> int:
        """The revision of the newest committed event, 0 when the log is empty."""
        ...

    async def horizon(self) -> int:
        """Events with a revision <= horizon may have been compacted away; 0 if none was."""
        ...

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        """Wait until head() > `after`; True when it is, False on timeout."""
        ...

    async def save_snapshot(self, revision: int, blob: bytes) -> None:
        """Store a snapshot, replacing an older one; a snapshot older than the stored is ignored."""
        ...

    async def load_snapshot(self) -> Snapshot | None:
        """The newest snapshot, or None."""
        ...

    async def compact(self, before_revision: int, recorded_before: datetime) -> int:
        """Delete events with revision < `before_revision` recorded before `recorded_before`.

        Never deletes an event newer than the stored snapshot's revision, so the snapshot plus
        the log always rebuild the state. Returns how many events were deleted. Idempotent.
        """
        ...

    async def mark_alive(self, at: datetime) -> None:
        """Record that the service was running at `at` (for crediting downtime)."""
        ...

    async def last_alive(self) -> datetime | None:
        """The latest time given to mark_alive, or None."""
        ...

    async def aclose(self) -> None:
        """Flush pending appends and release resources. Idempotent."""
        ...

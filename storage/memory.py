"""The reference backend: a list in memory. For tests and for the layers above storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from storage.base import NewEvent, Snapshot, StoredEvent
from storage.errors import Conflict, StorageUnavailable
from storage.waiters import HeadWatch


class MemoryEventLog:
    def __init__(self) -> None:
        self._events: list[StoredEvent] = []
        self._watch = HeadWatch()
        self._horizon = 0
        self._snapshot: Snapshot | None = None
        self._alive: datetime | None = None
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log is closed")

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        self._check_open()
        if base_revision is not None:
            # Newest first, so the scan stops at the base instead of walking the whole log.
            for stored in reversed(self._events):
                if stored.revision <= base_revision:
                    break
                if stored.stream == stream:
                    raise Conflict(f"stream {stream!r} changed after revision {base_revision}")
        now = datetime.now(UTC)
        head = self._watch.head
        for event in events:
            head += 1
            self._events.append(StoredEvent(head, stream, event.type, event.data, now))
        self._watch.advance(head)
        return head

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> list[StoredEvent]:
        self._check_open()
        # Revisions are dense from the horizon on, so the start index is arithmetic.
        start = max(after - self._horizon, 0)
        out: list[StoredEvent] = []
        for event in self._events[start:]:
            if len(out) >= limit:
                break
            if stream is None or event.stream == stream:
                out.append(event)
        return out

    async def head(self) -> int:
        self._check_open()
        return self._watch.head

    async def horizon(self) -> int:
        self._check_open()
        return self._horizon

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        return await self._watch.wait_for(after, timeout)

    async def save_snapshot(self, revision: int, blob: bytes) -> None:
        self._check_open()
        if self._snapshot is None or revision >= self._snapshot.revision:
            self._snapshot = Snapshot(revision, blob, datetime.now(UTC))

    async def load_snapshot(self) -> Snapshot | None:
        self._check_open()
        return self._snapshot

    async def compact(self, before_revision: int, recorded_before: datetime) -> int:
        self._check_open()
        limit = min(before_revision, (self._snapshot.revision + 1) if self._snapshot else 1)
        count = 0
        # Only a prefix can go, so revisions stay dense from the horizon on.
        for event in self._events:
            if event.revision >= limit or event.recorded_at >= recorded_before:
                break
            count += 1
        if count:
            self._horizon = self._events[count - 1].revision
            del self._events[:count]
        return count

    async def mark_alive(self, at: datetime) -> None:
        self._check_open()
        self._alive = at

    async def last_alive(self) -> datetime | None:
        self._check_open()
        return self._alive

    async def aclose(self) -> None:
        self._closed = True
        self._watch.close()

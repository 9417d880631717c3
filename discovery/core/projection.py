"""The in-memory projection: every cluster view, folded from the log by one tail task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from discovery.core.changes import Change, change_of
from discovery.core.errors import DamagedState
from membership.codec import decode_event
from membership.events import Event
from membership.model import ClusterView
from membership.registry import fold
from membership.snapshot import decode_snapshot
from storage.base import EventLog, StoredEvent

Listener = Callable[[str, Change], None]


class Projection:
    """Cluster views plus the revision they reflect; `head` only moves forward."""

    def __init__(self, views: dict[str, ClusterView] | None = None, head: int = 0) -> None:
        self.views: dict[str, ClusterView] = views or {}
        self.head = head
        self._listeners: list[Listener] = []
        self._advanced = asyncio.Event()
        # Events this process appended, by revision, so the tail need not decode what was
        # just encoded; entries are taken out as the tail folds them.
        self._own: dict[int, Event] = {}

    def expect(self, last_revision: int, events: Sequence[Event]) -> None:
        """Remember events appended at revisions ending with `last_revision`."""
        first = last_revision - len(events) + 1
        if first > self.head:  # not yet folded: nothing else will take them out
            for offset, event in enumerate(events):
                self._own[first + offset] = event

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def view(self, cluster_id: str) -> ClusterView:
        return self.views.get(cluster_id) or ClusterView(cluster_id)

    def apply(self, stored: Iterable[StoredEvent]) -> int:
        """Fold committed events in revision order, notify listeners; returns how many applied.

        Listeners run synchronously, in the same step as the fold, so a watcher that
        subscribes between two steps sees either the state before an event plus the event,
        or the state after it, never a gap or a duplicate.
        """
        count = 0
        for record in stored:
            if record.revision <= self.head:
                continue  # already folded (a catch-up read overlapping the live tail)
            if record.revision != self.head + 1:
                # Revisions are gap-free and compaction only removes what a snapshot covers:
                # a hole means lost or damaged rows, and folding past it would serve state
                # that never was.
                raise DamagedState(
                    f"the event log has a gap: revision {self.head + 1} is missing"
                    f" (the next one is {record.revision})"
                )
            event = self._own.pop(record.revision, None) or decode_event(record.type, record.data)
            fold(self.views, record.stream, event, record.revision)
            self.head = record.revision
            count += 1
            change = change_of(record.revision, event)
            if change is not None:
                for listener in self._listeners:
                    listener(record.stream, change)
        if count:
            self._advanced.set()
            self._advanced = asyncio.Event()
        return count

    async def wait_applied(self, revision: int) -> None:
        """Return once `head` >= `revision` (read-your-writes for the writer)."""
        while self.head < revision:
            await self._advanced.wait()

    def counts(self) -> tuple[int, int, int]:
        """(clusters, affiliates, endpoints) currently live."""
        affiliates = endpoints = 0
        for view in self.views.values():
            affiliates += len(view.affiliates)
            endpoints += sum(len(a.endpoints) for a in view.affiliates.values())
        return len(self.views), affiliates, endpoints


async def load_projection(log: EventLog, batch: int = 2000) -> Projection:
    """The newest snapshot, then every event after it; raises CodecError, DamagedState or
    StorageError when the stored state cannot be read or does not add up."""
    snapshot = await log.load_snapshot()
    projection = Projection()
    if snapshot is not None:
        views = await asyncio.to_thread(decode_snapshot, snapshot.blob)
        projection = Projection(views, snapshot.revision)
    while records := await log.read(projection.head, batch):
        projection.apply(records)
    return projection

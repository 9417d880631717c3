"""A cluster's past: its history, and its membership as of a retained revision or time.

Time travel folds the log forward from a known state, never backward (an update does not carry
what it replaced). The known state is the empty log while nothing was compacted, and the stored
snapshot once something was: compaction never deletes an event newer than the snapshot, so the
snapshot plus the events after it rebuild every revision from the snapshot's on. Revisions
before it may still be listed by the history, but their membership is gone with the events
compacted before them, hence `RevisionGone` naming the oldest revision that can be rebuilt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from discovery.core.errors import ServiceError
from discovery.core.values import HistoryEntry
from membership.codec import decode_event
from membership.events import GLOBAL_STREAM
from membership.model import Affiliate, ClusterView
from membership.registry import project
from membership.snapshot import decode_snapshot
from storage.base import EventLog, StoredEvent

_READ_BATCH = 2000
_MAX_REVISION = 2**63 - 1

Membership = tuple[int, list[Affiliate]]
"""(revision, the cluster's affiliates as of it)."""


class RevisionGone(ServiceError):
    """The asked-for revision or time is older than the oldest one that can be rebuilt."""

    code = "gone"

    def __init__(self, message: str, oldest: int) -> None:
        super().__init__(message)
        self.oldest = oldest


@dataclass(frozen=True, slots=True)
class Base:
    """A state the fold can start from: the cluster's view as of `revision`.

    `taken_at` is when that state was current (None: the beginning of the log).
    """

    revision: int
    view: ClusterView
    taken_at: datetime | None


async def read_history(
    log: EventLog, cluster_id: str, after: int, limit: int
) -> tuple[int, list[HistoryEntry]]:
    """(horizon, up to `limit` of the cluster's events after `after`); StorageError."""
    after = min(after, _MAX_REVISION)  # 64-bit signed in every backend
    horizon = await log.horizon()
    records = await log.read(after, limit, stream=cluster_id)
    return horizon, [HistoryEntry.of(r) for r in records]


def revision_at_time(base: Base, events: Sequence[StoredEvent], at_time: datetime) -> int:
    """The newest revision recorded at or before `at_time`; RevisionGone if before `base`."""
    revision = base.revision
    for record in events:
        if record.recorded_at > at_time:
            break
        revision = record.revision
    if revision == base.revision and base.taken_at is not None and at_time < base.taken_at:
        raise RevisionGone(
            f"{at_time.isoformat()} is older than the retained log", oldest=base.revision
        )
    return revision


def fold_until(base: Base, events: Iterable[StoredEvent], revision: int) -> ClusterView:
    """The cluster's view as of `revision`: `base` with every event up to it folded in."""
    if revision < base.revision:
        raise RevisionGone(
            f"revision {revision} is older than the retained log", oldest=base.revision
        )
    triples = (
        (r.stream, decode_event(r.type, r.data), r.revision)
        for r in events
        if base.revision < r.revision <= revision
    )
    views = project(triples, {base.view.id: base.view})
    return views.get(base.view.id) or ClusterView(base.view.id)


async def load_base(log: EventLog, cluster_id: str) -> Base:
    """The state time travel folds from: the empty log, or the snapshot once compacted."""
    if await log.horizon() == 0:
        return Base(0, ClusterView(cluster_id), None)
    snapshot = await log.load_snapshot()
    if snapshot is None:  # compaction always keeps a snapshot; an empty base is the safe guess
        return Base(await log.horizon(), ClusterView(cluster_id), None)
    views = await asyncio.to_thread(decode_snapshot, snapshot.blob)
    view = views.get(cluster_id) or ClusterView(cluster_id)
    return Base(snapshot.revision, view, snapshot.taken_at)


async def read_events(log: EventLog, cluster_id: str, after: int, upto: int) -> list[StoredEvent]:
    """The cluster's and the global stream's events in (after, upto], in revision order."""
    merged: list[StoredEvent] = []
    for stream in (cluster_id, GLOBAL_STREAM):
        cursor = after
        while cursor < upto:
            batch = await log.read(cursor, _READ_BATCH, stream=stream)
            merged.extend(r for r in batch if r.revision <= upto)
            if len(batch) < _READ_BATCH or batch[-1].revision >= upto:
                break
            cursor = batch[-1].revision
    merged.sort(key=lambda r: r.revision)
    return merged


async def membership_at(log: EventLog, cluster_id: str, at: int | datetime) -> Membership:
    """(revision, the cluster's affiliates right after revision `at`, or at time `at`).

    RevisionGone when that is older than the retained log; StorageError from the log.
    """
    head = await log.head()
    base = await load_base(log, cluster_id)
    events = await read_events(log, cluster_id, base.revision, head)
    revision = revision_at_time(base, events, at) if isinstance(at, datetime) else min(at, head)
    view = fold_until(base, events, revision)
    return revision, list(view.affiliates.values())

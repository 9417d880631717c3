"""Leader-only background work: downtime credit, liveness marks, GC, snapshots, compaction.

Exactly one replica leads (SQLite: the only one; PostgreSQL: the advisory-lock holder), so
expiry events are written once and snapshots never race each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from discovery.core.clock import Clock, Monotonic, system_clock
from discovery.core.errors import NotReady
from discovery.core.health import StorageHealth
from discovery.core.metrics import Metrics
from membership.commands import collect_garbage
from membership.events import GLOBAL_STREAM, AffiliateExpired, DowntimeCredited, Event
from membership.model import ClusterView
from membership.snapshot import encode_snapshot
from storage.base import EventLog
from storage.errors import Conflict, StorageError
from storage.leadership import Leadership

log = logging.getLogger("discovery.maintenance")


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintenanceOptions:
    """Seconds; the defaults are the settings' (discovery/settings.py), the one source."""

    gc_interval: float
    snapshot_interval: float
    retention: float
    heartbeat_interval: float


class MaintainedState(Protocol):
    """What maintenance needs of the core: a consistent cut of the state, and appends."""

    def cut(self) -> tuple[int, list[ClusterView]]: ...

    async def append(
        self, stream: str, events: Sequence[Event], *, base_revision: int | None
    ) -> int: ...

    async def catch_up(self) -> None: ...

    @property
    def health(self) -> StorageHealth: ...


class Maintenance:
    def __init__(
        self,
        state: MaintainedState,
        log: EventLog,
        leadership: Leadership,
        options: MaintenanceOptions,
        *,
        metrics: Metrics,
        clock: Clock = system_clock,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._state = state
        self._log = log
        self._leadership = leadership
        self._options = options
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._leading = False
        self._skipping = False
        self._next_gc = 0.0
        self._next_snapshot = 0.0

    @property
    def leading(self) -> bool:
        """Whether this replica runs GC and snapshots now (the one place this is kept)."""
        return self._leading

    async def run(self) -> None:
        """Lead when possible; while leading, run the periodic jobs. Runs until cancelled."""
        while True:
            await asyncio.sleep(min(self._options.heartbeat_interval, self._options.gc_interval))
            await self.step()

    async def step(self) -> None:
        """One pass: (re)acquire leadership, crediting downtime on acquisition, then the jobs
        that are due. Run once before serving, so no write lands before the credit."""
        try:
            if not self._leading or not await self._leadership.holds():
                self._set_leader(False)
                if await self._leadership.acquire():
                    await self.credit_downtime()
                    self._set_leader(True)
                    self._next_gc = 0.0
                    self._next_snapshot = self._monotonic() + self._options.snapshot_interval
            if self._leading:
                try:
                    await self._log.mark_alive(self._clock())
                except StorageError as exc:
                    self._state.health.write_failed(exc)
                    raise
                # The mark is a write: it tells a core whose writes failed that they work again.
                self._state.health.write_succeeded()
                now = self._monotonic()
                if now >= self._next_gc:
                    await self.collect_garbage()
                    self._next_gc = now + self._options.gc_interval
                if now >= self._next_snapshot:
                    await self.snapshot()
                    self._next_snapshot = now + self._options.snapshot_interval
            if self._skipping:
                log.info("maintenance resumed")
            self._skipping = False
        except (StorageError, NotReady) as exc:
            # Once per outage, not once per heartbeat: a full disk would flood the log.
            if not self._skipping:
                log.warning("maintenance skipped", extra={"error": str(exc)})
            self._skipping = True
            return
        except Exception:  # a bug here must not stop expiry for good
            log.exception("maintenance failed")

    async def release(self) -> None:
        """Give leadership up (shutdown), so another replica takes over at once. Idempotent."""
        self._set_leader(False)
        await self._leadership.release()

    def _set_leader(self, leading: bool) -> None:
        if leading != self._leading:
            log.info("leadership " + ("acquired" if leading else "lost"))
        self._leading = leading
        self._metrics.leader.set(1 if leading else 0)

    async def credit_downtime(self) -> None:
        """Record the time nobody was leading, so it does not count against any TTL."""
        last = await self._log.last_alive()
        now = self._clock()
        if last is None or now <= last:
            return
        await self._state.catch_up()
        event = DowntimeCredited(down_from=last, down_until=now)
        await self._state.append(GLOBAL_STREAM, [event], base_revision=None)
        log.info("downtime credited", extra={"seconds": (now - last).total_seconds()})

    async def collect_garbage(self) -> int:
        """Append expiry events for everything past due; returns affiliates expired."""
        now = self._clock()
        expired = clusters = 0
        _, views = self._state.cut()
        for view in views:
            events = collect_garbage(view, now)
            if not events:
                continue
            try:
                await self._state.append(view.id, events, base_revision=view.revision)
            except Conflict:
                continue  # changed meanwhile; the next pass decides again
            gone = sum(isinstance(e, AffiliateExpired) for e in events)
            expired += gone
            if gone == len(view.affiliates):
                clusters += 1
        self._metrics.gc_runs.inc()
        self._metrics.gc_affiliates.inc(expired)
        self._metrics.gc_clusters.inc(clusters)
        if expired:
            log.info("garbage collection run", extra={"removed_affiliates": expired})
        return expired

    async def snapshot(self) -> int:
        """Save the projection and compact the log behind it; returns the snapshot revision."""
        # Views are immutable, so the cut can be encoded off the event loop.
        revision, views = self._state.cut()
        try:
            blob = await asyncio.to_thread(encode_snapshot, views)
            await self._log.save_snapshot(revision, blob)
            horizon = self._clock() - timedelta(seconds=self._options.retention)
            removed = await self._log.compact(revision + 1, horizon)
        except StorageError:
            self._metrics.snapshots.labels("save", "error").inc()
            raise
        self._metrics.snapshots.labels("save", "success").inc()
        self._metrics.snapshot_bytes.set(len(blob))
        self._metrics.compacted.inc(removed)
        log.info(
            "state saved", extra={"revision": revision, "bytes": len(blob), "compacted": removed}
        )
        return revision

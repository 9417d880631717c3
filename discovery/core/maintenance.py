"""Leader-only background work: downtime credit, liveness marks, GC, snapshots, compaction.

Exactly one replica leads (SQLite: the only one; PostgreSQL: the advisory-lock holder), so
expiry events are written once and snapshots never race each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from discovery.core.errors import NotReady
from discovery.core.service import DiscoveryService
from discovery.leader import Leadership
from membership.commands import collect_garbage
from membership.events import GLOBAL_STREAM, AffiliateExpired, DowntimeCredited
from membership.snapshot import encode_snapshot
from storage.errors import Conflict, StorageError

log = logging.getLogger("discovery.core.maintenance")


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintenanceOptions:
    gc_interval: float = 60.0
    snapshot_interval: float = 600.0
    retention: float = 86400.0
    heartbeat_interval: float = 5.0


class Maintenance:
    def __init__(
        self, service: DiscoveryService, leadership: Leadership, options: MaintenanceOptions
    ) -> None:
        self.service = service
        self.leadership = leadership
        self.options = options
        self.is_leader = False
        self._next_gc = 0.0
        self._next_snapshot = 0.0

    async def run(self) -> None:
        """Lead when possible; while leading, run the periodic jobs. Runs until cancelled."""
        while True:
            await asyncio.sleep(min(self.options.heartbeat_interval, self.options.gc_interval))
            await self.step()

    async def step(self) -> None:
        """One pass: (re)acquire leadership, crediting downtime on acquisition, then the jobs
        that are due. Run once before serving, so no write lands before the credit."""
        try:
            if not self.is_leader or not await self.leadership.holds():
                self._set_leader(False)
                if await self.leadership.acquire():
                    await self.credit_downtime()
                    self._set_leader(True)
                    self._next_gc = 0.0
                    self._next_snapshot = time.monotonic() + self.options.snapshot_interval
            if self.is_leader:
                await self.service.log.mark_alive(self.service.clock())
                now = time.monotonic()
                if now >= self._next_gc:
                    await self.collect_garbage()
                    self._next_gc = now + self.options.gc_interval
                if now >= self._next_snapshot:
                    await self.snapshot()
                    self._next_snapshot = now + self.options.snapshot_interval
        except (StorageError, NotReady) as exc:
            log.warning("maintenance skipped", extra={"error": str(exc)})
        except Exception:  # a bug here must not stop expiry for good
            log.exception("maintenance failed")

    def _set_leader(self, leading: bool) -> None:
        if leading != self.is_leader:
            log.info("leadership " + ("acquired" if leading else "lost"))
        self.is_leader = leading
        self.service.leader = leading
        self.service.metrics.leader.set(1 if leading else 0)

    async def credit_downtime(self) -> None:
        """Record the time nobody was leading, so it does not count against any TTL."""
        last = await self.service.log.last_alive()
        now = self.service.clock()
        if last is None or now <= last:
            return
        await self.service.projection.wait_applied(await self.service.log.head())
        event = DowntimeCredited(down_from=last, down_until=now)
        await self.service.append(GLOBAL_STREAM, [event], base_revision=None)
        log.info("downtime credited", extra={"seconds": (now - last).total_seconds()})

    async def collect_garbage(self) -> int:
        """Append expiry events for everything past due; returns affiliates expired."""
        service = self.service
        now = service.clock()
        expired = clusters = 0
        for cluster_id, view in list(service.projection.views.items()):
            events = collect_garbage(view, now)
            if not events:
                continue
            try:
                await service.append(cluster_id, events, base_revision=view.revision)
            except Conflict:
                continue  # changed meanwhile; the next pass decides again
            gone = sum(isinstance(e, AffiliateExpired) for e in events)
            expired += gone
            if gone == len(view.affiliates):
                clusters += 1
        service.metrics.gc_runs.inc()
        service.metrics.gc_affiliates.inc(expired)
        service.metrics.gc_clusters.inc(clusters)
        if expired:
            log.info("garbage collection run", extra={"removed_affiliates": expired})
        return expired

    async def snapshot(self) -> int:
        """Save the projection and compact the log behind it; returns the snapshot revision."""
        service = self.service
        projection = service.projection
        revision = projection.head
        # Views are immutable, so a shallow copy is a consistent cut to encode off-loop.
        views = list(projection.views.values())
        try:
            blob = await asyncio.to_thread(encode_snapshot, views)
            await service.log.save_snapshot(revision, blob)
            horizon = service.clock() - timedelta(seconds=self.options.retention)
            removed = await service.log.compact(revision + 1, horizon)
        except StorageError:
            service.metrics.snapshots.labels("save", "error").inc()
            raise
        service.metrics.snapshots.labels("save", "success").inc()
        service.metrics.snapshot_bytes.set(len(blob))
        service.metrics.compacted.inc(removed)
        log.info(
            "state saved", extra={"revision": revision, "bytes": len(blob), "compacted": removed}
        )
        return revision

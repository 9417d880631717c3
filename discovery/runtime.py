"""Start and stop the core with its background work, in the right order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from discovery.clock import Clock, system_clock
from discovery.maintenance import Maintenance, MaintenanceOptions
from discovery.service import CoreOptions, DiscoveryService
from discovery.settings import Settings
from storage import SoleLeader, Storage, open_storage
from storage.base import EventLog
from storage.errors import StorageError

log = logging.getLogger("discovery")


def core_options(settings: Settings) -> CoreOptions:
    return CoreOptions(
        limits=settings.limits(),
        watch_buffer=settings.watch_buffer,
        rate_limit=settings.rate_limit,
        rate_burst=settings.rate_burst,
        redirect_endpoint=settings.redirect_endpoint,
        disable_client_ip=settings.disable_client_ip,
    )


async def _forget_idle_clients(service: DiscoveryService, interval: float = 60.0) -> None:
    """Drop the rate-limit buckets of clients that went quiet (every replica has its own)."""
    while True:
        await asyncio.sleep(interval)
        service.limiter.collect_garbage(time.monotonic())


class Runtime:
    """The core plus its maintenance; `start` loads state, `stop` saves it."""

    def __init__(
        self,
        settings: Settings,
        *,
        event_log: EventLog | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._given_log = event_log
        self._clock = clock
        self.service: DiscoveryService | None = None
        self.maintenance: Maintenance | None = None
        self._task: asyncio.Task[None] | None = None
        self._limiter_task: asyncio.Task[None] | None = None

    async def start(self) -> DiscoveryService:
        given = self._given_log
        # A log handed in is this process's alone (tests), so this process leads it.
        storage = (
            Storage(given, SoleLeader())
            if given is not None
            else await open_storage(self.settings.storage)
        )
        service = DiscoveryService(storage.log, core_options(self.settings), clock=self._clock)
        await service.load()
        service.start_tail()
        self.maintenance = Maintenance(
            service,
            storage.leadership,
            MaintenanceOptions(
                gc_interval=self.settings.gc_interval,
                snapshot_interval=self.settings.snapshot_interval,
                retention=self.settings.retention,
                heartbeat_interval=self.settings.heartbeat_interval,
            ),
        )
        await self.maintenance.step()
        self._task = asyncio.create_task(self.maintenance.run(), name="maintenance")
        self._limiter_task = asyncio.create_task(_forget_idle_clients(service), name="limiter-gc")
        self.service = service
        return service

    async def stop(self) -> None:
        for task in (self._task, self._limiter_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        service, maintenance = self.service, self.maintenance
        if service is None or maintenance is None:
            return
        if maintenance.is_leader:
            # A final snapshot makes the next start fast; the liveness mark bounds the
            # downtime credited then.
            with contextlib.suppress(StorageError):
                await asyncio.wait_for(maintenance.snapshot(), 10.0)
            with contextlib.suppress(StorageError):
                await service.log.mark_alive(service.clock())
        await service.stop_tail()
        with contextlib.suppress(StorageError):
            await maintenance.leadership.release()
        if self._given_log is None:
            await service.log.aclose()
        self.service = None

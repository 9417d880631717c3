"""The composition root: one process's storage, core, maintenance and listeners, started in
order, run in one task group, and drained in one place.

    async with Runtime(settings) as runtime:     # raises StartupError with one clear line
        await runtime.wait()                      # until stop() or a listener fails

`listeners=False` runs the core and its background work without binding any port (tests
that drive the HTTP app in process). A worker of `--workers N` gets a `handoff`: it serves on
the sockets its supervisor bound, binds gRPC beside the other workers (SO_REUSEPORT), and
writes its metrics where the supervisor's metrics port reads every worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from types import TracebackType
from urllib.parse import urlsplit

from prometheus_client import make_asgi_app
from starlette.types import ASGIApp

from discovery.core.clock import Clock, Monotonic, system_clock
from discovery.core.errors import DamagedState
from discovery.core.maintenance import Maintenance, MaintenanceOptions
from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.grpc.server import GrpcServer, start_grpc_server
from discovery.handoff import Handoff, tag_responses
from discovery.http.app import create_app
from discovery.http.listener import HttpListener
from discovery.http.tls import reload_on_change
from discovery.options import connection_limits, core_options
from discovery.settings import Settings
from discovery.startup import StartupError, bind, check_tls_pair
from membership.codec import CodecError
from storage import SoleLeader, Storage, open_storage
from storage.base import EventLog
from storage.errors import InvalidStorageURL, StorageError, StorageUnavailable

log = logging.getLogger("discovery")

_IDLE_CLIENT_SWEEP = 60.0
_STORAGE_RETRY_MAX = 10.0
_FINAL_SNAPSHOT_TIMEOUT = 10.0
_STATE_PUBLISH_INTERVAL = 1.0


class Runtime:
    """Everything one service process runs. `start()`/`stop()` or `async with`."""

    def __init__(
        self,
        settings: Settings,
        *,
        event_log: EventLog | None = None,
        clock: Clock = system_clock,
        monotonic: Monotonic = time.monotonic,
        listeners: bool = True,
        handoff: Handoff | None = None,
    ) -> None:
        self.settings = settings
        self._handoff = handoff
        self.metrics = Metrics(multiprocess_dir=handoff.metrics_dir if handoff else None)
        self._given_log = event_log
        self._clock = clock
        self._monotonic = monotonic
        self._listeners = listeners
        self._storage: Storage | None = None
        self._core: DiscoveryService | None = None
        self._maintenance: Maintenance | None = None
        self._http: HttpListener | None = None
        self._metrics_http: HttpListener | None = None
        self._grpc: GrpcServer | None = None
        self._sockets: dict[str, socket.socket] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._background: list[asyncio.Task[None]] = []
        self._servers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- what the process exposes -----------------------------------------------------------

    @property
    def core(self) -> DiscoveryService:
        if self._core is None:
            raise RuntimeError("the runtime is not started")
        return self._core

    @property
    def maintenance(self) -> Maintenance:
        if self._maintenance is None:
            raise RuntimeError("the runtime is not started")
        return self._maintenance

    @property
    def event_log(self) -> EventLog:
        if self._storage is None:
            raise RuntimeError("the runtime is not started")
        return self._storage.log

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @property
    def grpc_port(self) -> int | None:
        return self._grpc.port if self._grpc is not None else None

    # -- start ------------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> DiscoveryService:
        """Bind the listeners, open storage, load state, then serve; raises StartupError."""
        settings = self.settings
        try:
            sockets = self._bind() if self._listeners else {}
            given = self._given_log
            # A log handed in (tests) belongs to this process alone, so this process leads it.
            storage = (
                Storage(given, SoleLeader()) if given is not None else await self._open_storage()
            )
            self._storage = storage
            core = DiscoveryService(
                storage.log,
                core_options(settings),
                metrics=self.metrics,
                leading=self._leading,
                clock=self._clock,
                monotonic=self._monotonic,
            )
            try:
                await core.load()
            except (CodecError, DamagedState, StorageError) as exc:
                # Serving a state that does not add up is worse than not serving: exit, so
                # the supervisor alerts (or restores) instead of nodes trusting it.
                raise StartupError(f"cannot load the stored state: {exc}") from None
            self._core = core
            self._maintenance = Maintenance(
                core,
                storage.log,
                storage.leadership,
                MaintenanceOptions(
                    gc_interval=settings.gc_interval,
                    snapshot_interval=settings.snapshot_interval,
                    retention=settings.retention,
                    heartbeat_interval=settings.heartbeat_interval,
                ),
                metrics=self.metrics,
                clock=self._clock,
                monotonic=self._monotonic,
            )
            self._tasks = asyncio.TaskGroup()
            await self._tasks.__aenter__()
            tasks = self._tasks
            # The tail first: the downtime credit below is a write, visible once folded.
            self._background = [tasks.create_task(core.run_tail(), name="log-tail")]
            # Before serving: no write may land before the downtime credit.
            await self._maintenance.step()
            self._background += [
                tasks.create_task(self._maintenance.run(), name="maintenance"),
                tasks.create_task(self._sweep_idle_clients(), name="idle-clients"),
            ]
            if self._handoff is not None:
                publish = self._publish_state()
                self._background.append(tasks.create_task(publish, name="publish-state"))
            if self._listeners:
                await self._serve(sockets)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "service started",
            extra={
                "http": settings.http_addr if self._listeners else None,
                "grpc": settings.grpc_addr if self._listeners else None,
                "metrics": settings.metrics_addr if self._listeners else None,
                "storage": settings.storage.split("://", 1)[0],
            },
        )
        return core

    def _leading(self) -> bool:
        return self._maintenance is not None and self._maintenance.leading

    def _bind(self) -> dict[str, socket.socket]:
        settings = self.settings
        check_tls_pair(settings.tls_cert, settings.tls_key)
        if self._handoff is not None:
            # Bound by the supervisor, which also holds and probed the gRPC port.
            self._sockets = self._handoff.sockets()
            return self._sockets
        self._sockets = {"http": bind(settings.http_addr, "HTTP")}
        if settings.metrics_addr:
            self._sockets["metrics"] = bind(settings.metrics_addr, "metrics")
        if settings.grpc_addr:
            # grpc binds its own socket, later; a probe reports a taken port before the
            # (possibly long) load rather than after it.
            bind(settings.grpc_addr, "gRPC").close()
        return self._sockets

    async def _open_storage(self) -> Storage:
        """Open the configured log. A database that is down is waited for (it is often still
        starting next to us); a URL or a file that can never work fails at once."""
        url = self.settings.storage
        shared = urlsplit(url).scheme in ("postgresql", "postgres")
        delay = 0.5
        while True:
            try:
                return await open_storage(url)
            except InvalidStorageURL as exc:
                raise StartupError(f"storage {url!r}: {exc}") from None
            except StorageUnavailable as exc:
                if not shared:
                    raise StartupError(f"storage {url!r}: {exc}") from None
                log.warning(
                    "storage unreachable, retrying",
                    extra={"error": str(exc), "retry_in": delay},
                )
            except StorageError as exc:
                raise StartupError(f"storage {url!r}: {exc}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _STORAGE_RETRY_MAX)

    async def _serve(self, sockets: dict[str, socket.socket]) -> None:
        settings, core, tasks = self.settings, self.core, self._tasks
        assert tasks is not None
        app: ASGIApp = create_app(core, settings, self.metrics)
        if self._handoff is not None:
            app = tag_responses(app, self._handoff.index)
        self._http = HttpListener(
            app,
            sockets["http"],
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            limits=connection_limits(settings),
        )
        self._servers.append(tasks.create_task(self._http.serve(), name="http"))
        metrics_sock = sockets.get("metrics")
        if metrics_sock is not None:
            self._metrics_http = HttpListener(make_asgi_app(self.metrics.registry), metrics_sock)
            self._servers.append(tasks.create_task(self._metrics_http.serve(), name="metrics"))
        if settings.grpc_addr:
            shared = self._handoff is not None
            self._grpc = await start_grpc_server(core, settings, self.metrics, reuse_port=shared)
        context = await self._http.started()
        if context is not None:
            reload = reload_on_change(context, settings.tls_cert, settings.tls_key)
            self._background.append(tasks.create_task(reload, name="tls-reload"))

    async def _sweep_idle_clients(self) -> None:
        """Drop the rate-limit buckets of clients that went quiet (every replica has its own)."""
        while True:
            await asyncio.sleep(_IDLE_CLIENT_SWEEP)
            self.core.forget_idle_clients()

    async def _publish_state(self) -> None:
        """Keep this worker's state gauges current for whichever worker answers a scrape."""
        while True:
            self.metrics.publish_state()
            await asyncio.sleep(_STATE_PUBLISH_INTERVAL)

    # -- run and stop -----------------------------------------------------------------------

    async def wait(self) -> None:
        """Return when `stop_soon()` is called or a listener stops on its own."""
        waiter = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([waiter, *self._servers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    def stop_soon(self) -> None:
        """Ask `wait()` to return (a signal handler calls this)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Drain: end watches, stop listeners, save a final snapshot, close storage. Idempotent."""
        if self._core is not None:
            # End watch streams first, or the servers would wait out their grace period on
            # them; clients resume from their last revision on another replica or later.
            self._core.close_watches()
        for listener in (self._http, self._metrics_http):
            if listener is not None:
                listener.stop()
        await asyncio.gather(*self._servers, return_exceptions=True)
        if self._grpc is not None:
            await self._grpc.stop(grace=2.0)
        maintenance = self._maintenance
        tail, others = (
            (self._background[0], self._background[1:]) if self._background else (None, [])
        )
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        storage = self._storage
        if maintenance is not None and maintenance.leading and storage is not None:
            # A final snapshot makes the next start fast; the liveness mark bounds the
            # downtime credited then.
            with contextlib.suppress(StorageError):
                await asyncio.wait_for(maintenance.snapshot(), _FINAL_SNAPSHOT_TIMEOUT)
            with contextlib.suppress(StorageError):
                await storage.log.mark_alive(self._clock())
        if tail is not None:
            tail.cancel()
            await asyncio.gather(tail, return_exceptions=True)
        if self._tasks is not None:
            tasks, self._tasks = self._tasks, None
            await tasks.__aexit__(None, None, None)
        if maintenance is not None:
            with contextlib.suppress(StorageError):
                await maintenance.release()
        if storage is not None and self._given_log is None:
            await storage.aclose()
        for sock in self._sockets.values():
            sock.close()  # a no-op once a server has closed it
        self._sockets = {}
        self._core = self._maintenance = self._storage = None
        self._http = self._metrics_http = self._grpc = None
        self._background, self._servers = [], []

"""A real HTTP server (uvicorn on an ephemeral port) around a real core, for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from discovery.core.clock import Clock, system_clock
from discovery.core.service import DiscoveryService
from discovery.http.app import create_app
from discovery.runtime import Runtime
from discovery.settings import Settings
from storage.base import EventLog


@dataclass
class LiveServer:
    url: str
    service: DiscoveryService
    runtime: Runtime


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings | None = None,
    *,
    event_log: EventLog | None = None,
    clock: Clock = system_clock,
) -> AsyncIterator[LiveServer]:
    """Start the core and an HTTP listener on 127.0.0.1; stop both on exit."""
    settings = settings or Settings(rate_limit=0, storage="memory://")
    runtime = Runtime(settings, event_log=event_log, clock=clock)
    service = await runtime.start()
    app = create_app(settings, service=service)
    server = _QuietServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(f"http://127.0.0.1:{port}", service, runtime)
    finally:
        service.hub.close_all()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        await runtime.stop()

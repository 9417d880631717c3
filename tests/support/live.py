"""A real service (the runtime with its HTTP listener on an ephemeral port), for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from discovery.core.clock import Clock, system_clock
from discovery.core.service import DiscoveryService
from discovery.runtime import Runtime
from discovery.settings import Settings
from storage.base import EventLog


@dataclass
class LiveServer:
    url: str
    service: DiscoveryService
    runtime: Runtime


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings | None = None,
    *,
    event_log: EventLog | None = None,
    clock: Clock = system_clock,
) -> AsyncIterator[LiveServer]:
    """Start the runtime with an HTTP listener on 127.0.0.1 (no gRPC, no metrics port)."""
    settings = settings or Settings(rate_limit=0, storage="memory://")
    settings = settings.model_copy(
        update={"http_addr": "127.0.0.1:0", "grpc_addr": "", "metrics_addr": ""}
    )
    async with Runtime(settings, event_log=event_log, clock=clock) as runtime:
        yield LiveServer(f"http://127.0.0.1:{runtime.http_port}", runtime.core, runtime)


@contextlib.asynccontextmanager
async def in_process(
    settings: Settings | None = None,
    *,
    event_log: EventLog | None = None,
    clock: Clock = system_clock,
) -> AsyncIterator[Runtime]:
    """The runtime without listeners (drive `runtime.core`, or an app built around it)."""
    settings = settings or Settings(rate_limit=0, storage="memory://")
    async with Runtime(settings, event_log=event_log, clock=clock, listeners=False) as runtime:
        yield runtime

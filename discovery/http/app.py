"""The HTTP composition root: `create_app(settings)` wires routes, middleware and the core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from discovery.core.clock import Clock, system_clock
from discovery.core.service import DiscoveryService
from discovery.http import errors as http_errors
from discovery.http import routes_clusters as api_clusters
from discovery.http import routes_meta as api_meta
from discovery.http import routes_watch as api_watch
from discovery.http.middleware import BodyLimit, RawIDPath
from discovery.http.request_metrics import RequestMetrics
from discovery.runtime import Runtime
from discovery.settings import Settings
from storage.base import EventLog


def create_app(
    settings: Settings | None = None,
    *,
    event_log: EventLog | None = None,
    service: DiscoveryService | None = None,
    clock: Clock = system_clock,
) -> FastAPI:
    """The FastAPI app. With `service`, the caller owns the core (shared with gRPC);
    otherwise the app's lifespan starts one on `event_log` or `settings.storage`."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            app.state.service = service
            yield
            return
        runtime = Runtime(settings, event_log=event_log, clock=clock)
        app.state.service = await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Discovery service",
        summary="Event-sourced cluster membership; Talos-compatible discovery.",
        version=api_meta.SERVER_VERSION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    http_errors.install(app)
    app.include_router(api_meta.router)
    app.include_router(api_clusters.router)
    app.include_router(api_watch.router)
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RawIDPath)
    return app

"""The HTTP front end: `create_app(core, settings, metrics)` builds the routes around a core
that the runtime owns (no lifespan: the app starts nothing itself)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.http import (
    access_log,
    cors,
    errors,
    routes_clusters,
    routes_docs,
    routes_meta,
    routes_revocations,
    routes_ui,
    routes_watch,
)
from discovery.http.front import Front
from discovery.settings import Settings
from discovery.version import SERVER_VERSION


class _Service(FastAPI):
    """FastAPI with our layers outside its own: the hot routes answered in http/front.py never
    pass FastAPI's error, telemetry and body-limit layers (a few percent of a durable PUT),
    which the documented routes behind them still have."""

    outer: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.outer is None:
            await self.schema_app(scope, receive, send)
        else:
            await self.outer(scope, receive, send)

    async def schema_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself: the documented routes and their error handling."""
        await super().__call__(scope, receive, send)


def create_app(core: DiscoveryService, settings: Settings, metrics: Metrics) -> FastAPI:
    app = _Service(
        title="Discovery service",
        summary="Event-sourced cluster membership; Talos-compatible discovery.",
        version=SERVER_VERSION,
        docs_url=None,  # served from local assets by routes_docs
        redoc_url=None,
    )
    app.state.core = core
    app.state.settings = settings
    errors.install(app)
    app.include_router(routes_meta.router)
    app.include_router(routes_clusters.router)
    app.include_router(routes_watch.router)
    app.include_router(routes_revocations.router)
    routes_ui.install(app)
    routes_docs.install(app)
    # One layer for our own concerns (raw-path IDs, body cap, metrics, the hot routes), inside
    # the access log and CORS so its answers are logged and carry CORS headers too.
    front = Front(app.schema_app, core=core, settings=settings, metrics=metrics)
    app.outer = cors.wrap(access_log.wrap(front, settings), settings)
    return app

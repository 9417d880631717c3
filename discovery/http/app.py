"""The HTTP front end: `create_app(core, settings, metrics)` builds the routes around a core
that the runtime owns (no lifespan: the app starts nothing itself)."""

from __future__ import annotations

from fastapi import FastAPI

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
from discovery.http.middleware import BodyLimit, RawIDPath
from discovery.http.request_metrics import RequestMetrics
from discovery.settings import Settings
from discovery.version import SERVER_VERSION


def create_app(core: DiscoveryService, settings: Settings, metrics: Metrics) -> FastAPI:
    app = FastAPI(
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
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RawIDPath)
    access_log.install(app, settings)
    cors.install(app, settings)
    return app

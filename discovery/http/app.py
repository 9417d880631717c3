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
from discovery.http.front import Front
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
    # One layer for our own concerns (raw-path IDs, body cap, metrics, the hot write routes).
    app.add_middleware(Front, core=core, settings=settings, metrics=metrics)
    access_log.install(app, settings)
    cors.install(app, settings)
    return app

"""The HTTP front end: `create_app(core, settings, metrics)` builds the routes around a core
that the runtime owns (no lifespan: the app starts nothing itself)."""

from __future__ import annotations

from fastapi import FastAPI

from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.http import errors, routes_clusters, routes_meta, routes_watch
from discovery.http.front import Front
from discovery.settings import Settings
from discovery.version import SERVER_VERSION


def create_app(core: DiscoveryService, settings: Settings, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="Discovery service",
        summary="Event-sourced cluster membership; Talos-compatible discovery.",
        version=SERVER_VERSION,
    )
    app.state.core = core
    app.state.settings = settings
    errors.install(app)
    app.include_router(routes_meta.router)
    app.include_router(routes_clusters.router)
    app.include_router(routes_watch.router)
    # One layer for our own concerns (raw-path IDs, body cap, metrics, the hot write routes).
    app.add_middleware(Front, core=core, settings=settings, metrics=metrics)
    return app

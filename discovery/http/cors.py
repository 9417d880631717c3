"""CORS for the HTTP API: off unless origins are configured (`--cors-origins`)."""

from __future__ import annotations

from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from discovery.settings import Settings


def wrap(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Allow the configured origins to read the API; must be the outermost layer so
    preflight requests are answered before routing, rate limits or body checks."""
    origins = settings.cors_origin_list()
    if not origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=origins,
        # Reads and writes of the API; no cookies or credentials exist to share.
        allow_methods=["GET", "PUT", "DELETE", "POST"],
        allow_headers=["Content-Type", "Last-Event-ID"],
        allow_credentials=False,
        max_age=600,
    )

"""HTTP: the browser side: the zero-knowledge dashboard at /ui, the live landing page, and the
counts both refresh from.

The dashboard is static files shipped with the package; it opens records in the browser with
the secret from the URL fragment, so this module never sees a key (see static/dashboard.js).
"""

from __future__ import annotations

import html
from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from discovery.http.deps import CoreDep
from discovery.http.schemas import StatusResponse
from discovery.version import SERVER_VERSION

STATIC = resources.files("discovery.http") / "static"

# Only this origin's scripts and connections: a hostname sealed into a record is text, and even
# if a bug let it become markup, it could not load or send anything elsewhere.
_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_NO_LEAKS = {"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"}

router = APIRouter()


def install(app: FastAPI) -> None:
    """The routes and the static files of the dashboard."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(STATIC)), name="ui-static")


@router.get("/ui", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(str(STATIC / "dashboard.html"), headers=_NO_LEAKS)


@router.get("/v1/status", response_model=StatusResponse, tags=["health"])
async def status(core: CoreDep) -> StatusResponse:
    """Counts of the whole service (no cluster ids): what the landing page shows."""
    s = core.status()
    return StatusResponse(
        ready=s.ready,
        revision=s.revision,
        clusters=s.clusters,
        affiliates=s.affiliates,
        endpoints=s.endpoints,
        watchers=s.watchers,
        version=SERVER_VERSION,
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def landing(core: CoreDep) -> HTMLResponse:
    s = core.status()
    rows = "".join(
        f'<tr data-key="{key}"><th>{label}</th><td>{value}</td></tr>'
        for key, label, value in (
            ("clusters", "clusters", s.clusters),
            ("affiliates", "affiliates", s.affiliates),
            ("endpoints", "endpoints", s.endpoints),
            ("watchers", "watchers", s.watchers),
            ("revision", "log revision", s.revision),
            ("ready", "ready", "yes" if s.ready else "no"),
        )
    )
    page = (STATIC / "landing.html").read_text(encoding="utf-8")
    body = page.replace("{{rows}}", rows).replace("{{version}}", html.escape(SERVER_VERSION))
    return HTMLResponse(body, headers=_NO_LEAKS)

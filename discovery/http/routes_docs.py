"""HTTP: the API reference at /docs (Swagger UI) and /redoc, from files shipped with the package.

FastAPI's default pages load their scripts from a CDN and are blank on an air-gapped site; the
assets here come from the fastapi-offline package, which bundles Swagger UI and ReDoc.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def install(app: FastAPI) -> None:
    """Serve /docs and /redoc; the app must be built with docs_url=None and redoc_url=None."""
    static = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            # Swagger UI would otherwise send the spec to an online validator for its badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} · API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        # ReDoc's "API docs by Redocly" footer loads its logo from a CDN, with no option to
        # turn it off: hide the link, and let the browser load images from this origin only.
        body = bytes(page.body).replace(b"</head>", _HIDE_BRANDING + b"</head>", 1)
        return HTMLResponse(body, headers={"Content-Security-Policy": "img-src 'self' data:"})


_HIDE_BRANDING = b'<style>a[href*="redocly.com"]{display:none}</style>'

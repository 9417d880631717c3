"""HTTP: hello, health, readiness and the landing page."""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from discovery.http.deps import AdmittedCoreDep, ClientIPDep, CoreDep
from discovery.http.schemas import HelloRequest, HelloResponse
from discovery.version import SERVER_VERSION

router = APIRouter()


@router.post("/v1/hello", response_model=HelloResponse, tags=["hello"])
async def hello(body: HelloRequest, core: AdmittedCoreDep, client_ip: ClientIPDep) -> HelloResponse:
    """The client's IP as seen here (an endpoint candidate) and an optional redirect."""
    result = core.hello(body.cluster_id, body.client_version, client_ip)
    return HelloResponse(
        client_ip=str(result.client_ip) if result.client_ip is not None else None,
        redirect=result.redirect or None,
        server_version=SERVER_VERSION,
    )


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(core: CoreDep) -> JSONResponse:
    """200 once the state is loaded and the event log answers; 503 otherwise."""
    status = core.status()
    if status.ready:
        return JSONResponse(
            {"status": "ready", "revision": status.revision, "leader": status.leader}
        )
    message = {"code": "unavailable", "message": status.reason}
    return JSONResponse({"error": message}, status_code=503)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def landing(core: CoreDep) -> HTMLResponse:
    status = core.status()
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
        for k, v in (
            ("clusters", status.clusters),
            ("affiliates", status.affiliates),
            ("endpoints", status.endpoints),
            ("watchers", status.watchers),
            ("log revision", status.revision),
            ("ready", "yes" if status.ready else "no"),
        )
    )
    return HTMLResponse(_PAGE.format(version=html.escape(SERVER_VERSION), rows=rows))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Discovery service</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;padding:0 1em}}
table{{border-collapse:collapse}}
th,td{{padding:.2em 1em;text-align:left;border-bottom:1px solid #ddd}}
code{{background:#f4f4f4;padding:0 .3em}}</style></head><body>
<h1>Cluster discovery service</h1>
<p>Machines of a cluster publish <em>affiliate records</em> here and watch each other's, so they can
build a WireGuard mesh before anything else runs. Records are sealed with the cluster secret
(AES-256-GCM for data, AES-ECB for endpoints so they can be deduplicated); this service never
holds the key and only ever stores ciphertext.</p>
<p>Every change is an event in an append-only log; membership is the fold of that log, and watchers
can resume from any revision. Speaks the Talos discovery gRPC API and a JSON/SSE HTTP API
(<a href="/docs">API reference</a>).</p>
<h2>Now</h2><table>{rows}</table>
<p><small>version {version}</small></p>
</body></html>
"""

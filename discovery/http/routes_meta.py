"""HTTP: hello, health and readiness (the landing page is in routes_ui)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

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

"""One place that maps errors to HTTP responses: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from discovery.core.errors import (
    InvalidArgument,
    NotReady,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
)
from discovery.core.past import RevisionGone

log = logging.getLogger("discovery.http")

_STATUS: dict[type[ServiceError], int] = {
    InvalidArgument: 400,
    ResourceExhausted: 422,
    RateLimited: 429,
    NotReady: 503,
    Unauthenticated: 401,
    PermissionDenied: 403,
}

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def service_error_parts(exc: ServiceError) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) for a core error: one mapping for every route."""
    status = _STATUS.get(type(exc), 500)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    error = {"error": {"code": exc.code, "message": exc.message}}
    body = json.dumps(error, ensure_ascii=False, separators=(",", ":")).encode()
    return status, body, headers


def _describe(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed_json", "request body is not valid JSON"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = str(e.get("msg", "is invalid"))
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}")
    return 422, "invalid_request", "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> Response:
        status, body, headers = service_error_parts(exc)
        return Response(body, status, headers, media_type="application/json")

    @app.exception_handler(RevisionGone)
    async def _gone(_: Request, exc: RevisionGone) -> JSONResponse:
        body = {"code": exc.code, "message": exc.message, "oldest": exc.oldest}
        return JSONResponse({"error": body}, status_code=410)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe(exc)
        return error_response(status, code, message)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal", "internal error")

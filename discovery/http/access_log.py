"""An access log of the HTTP API (off by default, `--access-log`): one line per request."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from discovery.settings import Settings

log = logging.getLogger("discovery.http.access")


class AccessLog:
    """Logs method, raw path and query, status and duration once the response has started.

    The raw path is logged as received (still percent-encoded), so what is logged is exactly
    what reached the service; headers and bodies are never logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = (raw + (b"?" + query if query else b"")).decode("latin-1")

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                client = scope.get("client")
                log.info(
                    "%s %s %d",
                    scope["method"],
                    target,
                    message["status"],
                    extra={
                        "method": scope["method"],
                        "target": target,
                        "status": message["status"],
                        "client": client[0] if client else None,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
            await send(message)

        await self.app(scope, receive, logged)


def wrap(app: ASGIApp, settings: Settings) -> ASGIApp:
    return AccessLog(app) if settings.access_log else app

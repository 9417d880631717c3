"""Count HTTP requests by route and status: discovery_requests_total{api="http",...}."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from discovery.core.metrics import Metrics


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self._requests = metrics.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            # The route's name, not the path: ids in paths would explode the label set.
            route = scope.get("route")
            operation = getattr(route, "name", None) or "unmatched"
            self._requests.labels("http", operation, str(status)).inc()

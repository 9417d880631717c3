"""Comparison servers for the update benchmark: the same request shape, no work behind it."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from discovery.http.schemas import AffiliateUpdate, RevisionResponse

fastapi_app = FastAPI()


@fastapi_app.put("/v1/clusters/{cluster}/affiliates/{affiliate}", response_model=RevisionResponse)
async def put_affiliate(cluster: str, affiliate: str, body: AffiliateUpdate) -> RevisionResponse:
    """Parses and validates the body exactly as the real route does, then returns."""
    return RevisionResponse(revision=0)


_REPLY = json.dumps({"revision": 0}).encode()


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor: a bare ASGI callable that drains the body and answers."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_REPLY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _REPLY})

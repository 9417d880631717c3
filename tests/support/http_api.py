"""Helpers over a running service's HTTP API: read a cluster's history, record a watch."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from tests.support.sse import events


async def history(url: str, cluster: str) -> list[dict[str, Any]]:
    """Every retained event of `cluster`, oldest first, across pages."""
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        after = 0
        while page := (
            await http.get(f"/v1/clusters/{cluster}/events", params={"after": after, "limit": 1000})
        ).json()["events"]:
            out += page
            after = page[-1]["revision"]
    return out


async def record_watch(url: str, cluster: str, ids: list[int], since: int | None = None) -> None:
    """Append each change's revision to `ids` (-1 for a snapshot) until the stream breaks.

    With `since`, the stream must resume: a snapshot then fails the assertion.
    """
    headers = {"Last-Event-ID": str(since)} if since is not None else {}
    with contextlib.suppress(httpx.HTTPError):
        async with (
            httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5, read=60)) as http,
            http.stream("GET", f"/v1/clusters/{cluster}/watch", headers=headers) as response,
        ):
            async for event in events(response):
                if event.event == "snapshot":
                    assert since is None, "a resuming watcher was sent a snapshot"
                    ids.append(-1)
                elif event.id is not None:
                    ids.append(event.id)

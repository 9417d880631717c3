"""Helpers over a running service's HTTP API: read a cluster's history, record a watch."""

from __future__ import annotations

import asyncio
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


async def assert_acknowledged_writes_kept(url: str, acked: list[tuple[str, str, int]]) -> None:
    """Every acknowledged (cluster, affiliate, revision) is live, under its own revision."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for cluster in {c for c, _, _ in acked}:
            listing = (await http.get(f"/v1/clusters/{cluster}/affiliates")).json()
            live = {a["id"] for a in listing["affiliates"]}
            by_revision = {e["revision"]: e["affiliate_id"] for e in await history(url, cluster)}
            for c, name, revision in acked:
                if c == cluster:
                    assert name in live, f"acknowledged write {name} lost"
                    assert by_revision.get(revision) == name, "one revision given twice"


async def assert_watchers_resume_exactly(url: str, seen: dict[str, list[int]]) -> None:
    """Each watcher resumes from the last id it saw and has then seen exactly its cluster's
    history: every revision once, in order (`seen` as `record_watch` fills it)."""
    for cluster, ids in seen.items():
        before = [r for r in ids if r >= 0]
        assert ids[0] == -1 and before, "watcher saw no snapshot or events"
        resumed: list[int] = []
        task = asyncio.create_task(record_watch(url, cluster, resumed, since=before[-1]))
        expected = [e["revision"] for e in await history(url, cluster)]
        expected = expected[expected.index(before[0]) :]
        async with asyncio.timeout(10):
            while before + resumed != expected:
                assert len(before + resumed) <= len(expected), "duplicate event"
                await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

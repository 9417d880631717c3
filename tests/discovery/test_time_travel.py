"""Time travel: `GET /v1/clusters/{c}/affiliates?at=REV` and `?at_time=`, and the 410 past the
retained log."""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from discovery.core.service import DiscoveryService
from discovery.http.app import create_app
from discovery.settings import Settings
from membership.snapshot import encode_snapshot
from storage.memory import MemoryEventLog
from tests.support.live import in_process

pytestmark = pytest.mark.anyio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Harness:
    def __init__(self, client: httpx.AsyncClient, log: MemoryEventLog, core: DiscoveryService):
        self.client, self.log, self.core = client, log, core

    async def put(self, affiliate: str, data: bytes, cluster: str = "c") -> int:
        body = {"data": b64(data), "endpoints": [b64(b"ep-" + data)], "ttl": 600}
        r = await self.client.put(f"/v1/clusters/{cluster}/affiliates/{affiliate}", json=body)
        assert r.status_code == 200, r.text
        revision: int = r.json()["revision"]
        return revision

    async def delete(self, affiliate: str) -> int:
        r = await self.client.delete(f"/v1/clusters/c/affiliates/{affiliate}")
        revision: int = r.json()["revision"]
        return revision

    async def at(self, **params: str | int) -> httpx.Response:
        return await self.client.get("/v1/clusters/c/affiliates", params=params)

    async def members(self, **params: str | int) -> dict[str, str]:
        r = await self.at(**params)
        assert r.status_code == 200, r.text
        return {a["id"]: a["data"] for a in r.json()["affiliates"]}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    settings = Settings(rate_limit=0)
    log = MemoryEventLog()
    async with in_process(settings, event_log=log) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(client, log, runtime.core)


async def test_each_revision_shows_the_membership_as_it_was(harness: Harness) -> None:
    r1 = await harness.put("a", b"a1")
    r2 = await harness.put("b", b"b1", cluster="c")
    await harness.put("x", b"other cluster", cluster="other")
    r3 = await harness.put("a", b"a2")
    r4 = await harness.delete("b")
    assert await harness.members(at=r1) == {"a": b64(b"a1")}
    assert await harness.members(at=r2) == {"a": b64(b"a1"), "b": b64(b"b1")}
    assert await harness.members(at=r3) == {"a": b64(b"a2"), "b": b64(b"b1")}
    assert await harness.members(at=r4) == {"a": b64(b"a2")}
    assert await harness.members(at=0) == {}
    # The list says which revision it reflects; a revision past the head is the head.
    assert (await harness.at(at=r2)).json()["revision"] == r2
    assert await harness.members(at=10**9) == await harness.members()


async def test_endpoints_are_folded_too(harness: Harness) -> None:
    r1 = await harness.put("a", b"a1")
    await harness.client.put(
        "/v1/clusters/c/affiliates/a", json={"endpoints": [b64(b"later")], "ttl": 600}
    )
    [then] = (await harness.at(at=r1)).json()["affiliates"]
    [now] = (await harness.at()).json()["affiliates"]
    assert then["endpoints"] == [b64(b"ep-a1")]
    assert now["endpoints"] == [b64(b"ep-a1"), b64(b"later")]


async def test_at_time_picks_the_last_revision_recorded_by_then(harness: Harness) -> None:
    await harness.put("a", b"a1")
    between = datetime.now(UTC)
    await harness.put("b", b"b1")
    assert await harness.members(at_time=between.isoformat()) == {"a": b64(b"a1")}
    # RFC 3339 with a Z, and a time before anything happened (nothing compacted: empty).
    assert await harness.members(at_time=between.isoformat().replace("+00:00", "Z")) == {
        "a": b64(b"a1")
    }
    before = (between - timedelta(hours=1)).isoformat()
    assert await harness.members(at_time=before) == {}
    assert (await harness.at(at_time="yesterday")).status_code == 422


async def test_older_than_the_snapshot_is_410_with_the_oldest_revision(harness: Harness) -> None:
    r1 = await harness.put("a", b"a1")
    r2 = await harness.put("b", b"b1")
    # What maintenance does: save the projection, then compact the log behind it.
    revision, views = harness.core.cut()
    await harness.log.save_snapshot(revision, encode_snapshot(views))
    assert await harness.log.compact(revision + 1, datetime.now(UTC) + timedelta(days=1)) > 0
    r3 = await harness.put("a", b"a2")

    gone = await harness.at(at=r1)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "gone"
    assert gone.json()["error"]["oldest"] == r2
    assert await harness.members(at=r2) == {"a": b64(b"a1"), "b": b64(b"b1")}
    assert await harness.members(at=r3) == {"a": b64(b"a2"), "b": b64(b"b1")}
    long_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await harness.at(at_time=long_ago)).status_code == 410


async def test_bad_revision_and_cluster_are_rejected(harness: Harness) -> None:
    assert (await harness.at(at=-1)).status_code == 422
    both = await harness.at(at=1, at_time="2026-01-01T00:00:00Z")
    assert both.status_code == 400
    r = await harness.client.get("/v1/clusters/" + "x" * 300 + "/affiliates", params={"at": 1})
    assert r.status_code == 400


async def test_every_revision_rebuilt_equals_what_was_live_then(harness: Harness) -> None:
    # Replay == live: after each write, remember the live list; then rebuild every revision.
    rng = random.Random(16)
    seen: dict[int, dict[str, str]] = {}
    for step in range(40):
        affiliate = rng.choice("abcde")
        if rng.random() < 0.3:
            revision = await harness.delete(affiliate)
        else:
            revision = await harness.put(affiliate, f"{affiliate}{step}".encode())
        seen[revision] = await harness.members()
    for revision, members in seen.items():
        assert await harness.members(at=revision) == members, revision

"""Watching: SSE over a real listener, resume by revision, slow watchers, expiry."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from discovery.core.changes import Change, WatchSnapshot
from discovery.core.service import DiscoveryService
from discovery.runtime import Runtime
from discovery.settings import Settings
from storage.memory import MemoryEventLog
from tests.fakes import FakeClock
from tests.support.live import live_server
from tests.support.sse import SSEEvent, events

pytestmark = pytest.mark.anyio

TTL = timedelta(minutes=5)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def take(stream: AsyncIterator[SSEEvent], n: int, timeout: float = 5.0) -> list[SSEEvent]:
    out: list[SSEEvent] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(stream))
    return out


async def put(service: DiscoveryService, cluster: str, name: str, data: bytes = b"d") -> int:
    return await service.update_affiliate(
        cluster, name, data=data, endpoints=[], ttl_seconds=TTL.total_seconds()
    )


async def test_snapshot_then_updates_and_deletes_with_revisions_as_ids() -> None:
    async with live_server() as live, httpx.AsyncClient(base_url=live.url) as http:
        await put(live.service, "c", "before")
        async with http.stream("GET", "/v1/clusters/c/watch") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = events(response)
            [snapshot] = await take(stream, 1)
            assert snapshot.event == "snapshot"
            assert [a["id"] for a in snapshot.data["affiliates"]] == ["before"]
            assert snapshot.id == snapshot.data["revision"]

            r1 = await put(live.service, "c", "a", b"one")
            await put(live.service, "other", "x")  # another cluster: not seen here
            r2 = await live.service.delete_affiliate("c", "before")
            update, delete = await take(stream, 2)
    assert (update.id, update.event, update.data["data"]) == (r1, "update", b64(b"one"))
    assert (delete.id, delete.event, delete.data) == (r2, "delete", {"id": "before"})


@pytest.mark.parametrize("how", ["last-event-id", "since"])
async def test_resume_replays_exactly_the_missed_events(how: str) -> None:
    async with live_server() as live, httpx.AsyncClient(base_url=live.url) as http:
        async with http.stream("GET", "/v1/clusters/c/watch") as response:
            stream = events(response)
            await take(stream, 1)
            await put(live.service, "c", "a")
            [seen] = await take(stream, 1)
        # While disconnected: changes, an invisible refresh, and another cluster's writes.
        missed = [await put(live.service, "c", "b"), await put(live.service, "c", "a", b"v2")]
        await live.service.update_affiliate(
            "c", "b", data=b"d", endpoints=[], ttl_seconds=(TTL * 2).total_seconds()
        )
        await put(live.service, "elsewhere", "z")
        missed.append(await live.service.delete_affiliate("c", "b"))

        params, headers = {}, {}
        if how == "since":
            params["since"] = str(seen.id)
        else:
            headers["Last-Event-ID"] = str(seen.id)
        async with http.stream(
            "GET", "/v1/clusters/c/watch", params=params, headers=headers
        ) as response:
            stream = events(response)
            replayed = await take(stream, 3)
            live_rev = await put(live.service, "c", "after")
            [after] = await take(stream, 1)
    assert [e.id for e in replayed] == missed
    assert [e.event for e in replayed] == ["update", "update", "delete"]
    assert replayed[1].data["data"] == b64(b"v2")
    assert after.id == live_rev


async def test_resume_from_before_the_retained_log_sends_a_snapshot() -> None:
    settings = Settings(rate_limit=0, retention=0)
    async with live_server(settings, event_log=MemoryEventLog()) as live:
        first = await put(live.service, "c", "a")
        await put(live.service, "c", "b")
        assert live.runtime.maintenance is not None
        await live.runtime.maintenance.snapshot()
        assert await live.runtime.event_log.horizon() >= first
        async with (
            httpx.AsyncClient(base_url=live.url) as http,
            http.stream("GET", "/v1/clusters/c/watch?since=0") as response,
        ):
            [event] = await take(events(response), 1)
    assert event.event == "snapshot"
    assert sorted(a["id"] for a in event.data["affiliates"]) == ["a", "b"]


async def test_resume_from_an_unknown_future_revision_sends_a_snapshot() -> None:
    async with live_server() as live, httpx.AsyncClient(base_url=live.url) as http:
        await put(live.service, "c", "a")
        headers = {"Last-Event-ID": "999999"}
        async with http.stream("GET", "/v1/clusters/c/watch", headers=headers) as response:
            [event] = await take(events(response), 1)
    assert event.event == "snapshot"


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    settings = Settings(rate_limit=0, watch_buffer=4)
    async with Runtime(settings, event_log=MemoryEventLog(), listeners=False) as runtime:
        yield runtime


@pytest.fixture
def service(runtime: Runtime) -> DiscoveryService:
    return runtime.core


async def test_slow_watcher_catches_up_from_the_log_without_blocking_writers(
    service: DiscoveryService, runtime: Runtime
) -> None:
    watch = service.watch("c")
    first = await anext(watch)
    assert isinstance(first, WatchSnapshot)
    # 200 writes while the watcher reads nothing: its queue (4) overflows many times over.
    async with asyncio.timeout(10):
        for i in range(200):
            await put(service, "c", f"a{i % 7}", f"v{i}".encode())
    state: dict[str, bytes] = {}
    revisions: list[int] = []
    async with asyncio.timeout(10):
        while not revisions or revisions[-1] < service.status().revision:
            message = await anext(watch)
            assert isinstance(message, Change)
            revisions.append(message.revision)
            if message.affiliate is not None:
                state[message.affiliate_id] = message.affiliate.data
    await watch.aclose()
    assert revisions == sorted(set(revisions))
    assert state == {a.id: a.data for a in service.list_affiliates("c")[1]}
    assert runtime.metrics.watch_catchups._value.get() >= 1
    assert service.status().watchers == 0


async def test_idle_watch_yields_keepalives(service: DiscoveryService) -> None:
    watch = service.watch("c", idle=0.01)
    assert isinstance(await anext(watch), WatchSnapshot)
    assert await anext(watch) is None
    await watch.aclose()


async def test_expiry_is_a_deletion_and_endpoint_expiry_an_update() -> None:
    clock = FakeClock()
    runtime = Runtime(
        Settings(rate_limit=0), event_log=MemoryEventLog(), clock=clock, listeners=False
    )
    service = await runtime.start()
    maintenance = runtime.maintenance
    assert maintenance is not None
    try:
        await service.update_affiliate(
            "c", "short", data=b"d", endpoints=[], ttl_seconds=timedelta(seconds=1).total_seconds()
        )
        await service.update_affiliate(
            "c",
            "long",
            data=b"d",
            endpoints=[b"e1"],
            ttl_seconds=timedelta(minutes=10).total_seconds(),
        )
        await service.update_affiliate(
            "c",
            "long",
            data=None,
            endpoints=[b"e2"],
            ttl_seconds=timedelta(seconds=1).total_seconds(),
        )
        watch = service.watch("c")
        await anext(watch)
        clock.advance(2)
        assert await maintenance.collect_garbage() == 1
        async with asyncio.timeout(5):
            changes = [await anext(watch), await anext(watch)]
        await watch.aclose()
    finally:
        await runtime.stop()
    by_id = {c.affiliate_id: c for c in changes if isinstance(c, Change)}
    assert by_id["short"].deleted
    long = by_id["long"].affiliate
    assert long is not None and long.endpoint_blobs() == (b"e1",)
    assert [a.id for a in service.list_affiliates("c")[1]] == ["long"]

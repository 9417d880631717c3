"""The watch stream served raw (discovery/http/sse.py) against a real process: the same stream
the documented route gives, queries it does not take go to that route, and a client that hangs
up gives its watch back at once rather than at the next keep-alive (15 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.process import ServiceProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "memory://", extra=["--rate-limit", "0", "--max-watches-per-client", "1"]
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


async def _head(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """The response head and the first frame of a watch, read off a raw socket."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    body = b""
    if " 200 " in head.split("\r\n")[0]:
        await reader.readuntil(b"\r\n")  # the chunk's size line
        body = await reader.readuntil(b"\n\n")
    writer.close()
    return head, body


async def test_the_stream_starts_with_retry_and_the_snapshot(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.url) as http:
        put = await http.put("/v1/clusters/c/affiliates/a", json={"data": "ZA==", "ttl": 60})
        assert put.status_code == 200
    head, first = await _head(service.url, "/v1/clusters/c/watch")
    assert head.startswith("HTTP/1.1 200")
    assert "content-type: text/event-stream; charset=utf-8" in head.lower()
    assert "cache-control: no-cache" in head.lower()
    assert first.startswith(b"retry: 1000\nid: 1\nevent: snapshot\ndata: ")
    # Resuming: exactly the events after the revision, no snapshot.
    await asyncio.sleep(0.2)  # the first watch's slot comes back when its socket closes
    head, first = await _head(service.url, "/v1/clusters/c/watch?since=0")
    assert head.startswith("HTTP/1.1 200")
    assert first.startswith(b"retry: 1000\nid: 1\nevent: update\ndata: ")


async def test_bad_resume_points_are_the_schema_route_errors(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.url) as http:
        r = await http.get("/v1/clusters/c/watch?since=-1")
        assert r.status_code == 422  # not taken raw: pydantic's answer, as documented
        assert "since" in r.json()["error"]["message"]
        r = await http.get("/v1/clusters/c/watch", headers={"Last-Event-ID": "x"})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "Last-Event-ID must be a revision number"
        r = await http.get("/v1/clusters/" + "x" * 300 + "/watch")
        assert r.status_code == 400
        assert "cluster ID" in r.json()["error"]["message"]


async def test_a_client_that_hangs_up_gives_its_watch_back(service: ServiceProcess) -> None:
    head, _ = await _head(service.url, "/v1/clusters/c/watch")  # closes its socket after
    assert head.startswith("HTTP/1.1 200")
    # The cap is one watch: a second is accepted only once the first was released, which
    # must not wait for the keep-alive write (15 s) to find the socket closed.
    deadline = time.monotonic() + 5.0
    while True:
        head, _ = await _head(service.url, "/v1/clusters/c/watch")
        if head.startswith("HTTP/1.1 200") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert head.startswith("HTTP/1.1 200"), head

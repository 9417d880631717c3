"""The one log behind several workers: a watch resumes on the other worker with exactly the
events it missed, and SIGKILL of a worker and then of the supervisor, under concurrent
writes, loses no acknowledged write."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.http_api import (
    assert_acknowledged_writes_kept,
    assert_watchers_resume_exactly,
    history,
    record_watch,
)
from tests.support.process import ServiceProcess
from tests.support.sse import SSEEvent, events

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HEADER = "x-discovery-worker"


async def _put(url: str, cluster: str, name: str) -> None:
    # A client per write: a fresh connection, so the writes land on either worker.
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        data = base64.b64encode(name.encode()).decode()
        r = await http.put(
            f"/v1/clusters/{cluster}/affiliates/{name}", json={"data": data, "ttl": 600}
        )
        assert r.status_code == 200, r.text


async def _watch_ids(stream: AsyncIterator[SSEEvent], count: int, wait: float = 10) -> list[int]:
    """The revisions of the next `count` changes (-1 for a snapshot)."""
    ids: list[int] = []
    async with asyncio.timeout(wait):
        while len(ids) < count:
            event = await anext(stream)
            ids.append(-1 if event.event == "snapshot" else event.id or 0)
    return ids


async def test_a_watch_resumes_on_the_other_worker_with_exactly_the_missed_events(
    tmp_path: Path,
) -> None:
    service = ServiceProcess(
        f"sqlite:///{tmp_path}/events.db", workers=2, extra=["--rate-limit", "0"]
    )
    service.start().wait_workers()
    try:
        for i in range(3):
            await _put(service.url, "r", f"before{i}")
        async with (
            httpx.AsyncClient(base_url=service.url, timeout=10) as http,
            http.stream("GET", "/v1/clusters/r/watch") as watch,
        ):
            first = watch.headers[HEADER]
            for i in range(3):
                await _put(service.url, "r", f"seen{i}")
            seen = await _watch_ids(events(watch), 4)
        assert seen[0] == -1
        for i in range(5):
            await _put(service.url, "r", f"missed{i}")
        expected = [
            e["revision"] for e in await history(service.url, "r") if e["revision"] > seen[-1]
        ]
        # At least the five: the watch's worker may fold a write taken by the other one after
        # its snapshot, so the last of the writes it has "seen" can arrive later, and be missed.
        assert len(expected) >= 5

        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "never reached the other worker"
            async with (
                httpx.AsyncClient(base_url=service.url, timeout=10) as http,
                http.stream(
                    "GET", "/v1/clusters/r/watch", headers={"Last-Event-ID": str(seen[-1])}
                ) as resumed,
            ):
                if resumed.headers[HEADER] == first:
                    continue
                stream = events(resumed)
                assert await _watch_ids(stream, len(expected)) == expected
                # Nothing more: no duplicate, no snapshot.
                with pytest.raises(TimeoutError):
                    await _watch_ids(stream, 1, wait=1)
                break
    finally:
        assert service.stop() == 0


WRITERS = 12
WATCHED = ["c0", "c1", "c2"]


async def _writer(
    http: httpx.AsyncClient, n: int, acked: list[tuple[str, str, int]], stop: asyncio.Event
) -> None:
    cluster = f"c{n}"
    i = 0
    while not stop.is_set():
        name = f"w{n}-{i}"
        i += 1
        data = base64.b64encode(name.encode()).decode()
        try:
            r = await http.put(
                f"/v1/clusters/{cluster}/affiliates/{name}", json={"data": data, "ttl": 1800}
            )
        except httpx.HTTPError:
            await asyncio.sleep(0.01)  # its worker died under it: go on with the others
            continue
        if r.status_code == 200:
            acked.append((cluster, name, r.json()["revision"]))


async def _until(condition: object, timeout: float = 30.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_sigkill_of_a_worker_then_the_supervisor_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path}/events.db"
    proc = ServiceProcess(storage, workers=2, extra=["--rate-limit", "0"]).start()
    pids = proc.wait_workers()
    acked: list[tuple[str, str, int]] = []
    seen: dict[str, list[int]] = {c: [] for c in WATCHED}
    stop = asyncio.Event()
    try:
        watchers = [asyncio.create_task(record_watch(proc.url, c, seen[c])) for c in WATCHED]
        limits = httpx.Limits(max_connections=WRITERS)
        async with httpx.AsyncClient(base_url=proc.url, timeout=10, limits=limits) as http:
            writers = [asyncio.create_task(_writer(http, n, acked, stop)) for n in range(WRITERS)]
            await _until(lambda: len(acked) >= 200)
            os.kill(pids[0], signal.SIGKILL)
            killed_at = len(acked)
            # The other worker keeps taking writes, and the replacement joins it.
            await _until(lambda: len(acked) >= killed_at + 200)
            await _until(lambda: len(proc.worker_pids()) == 2)
            await _until(lambda: len(acked) >= killed_at + 400)
            assert proc.proc is not None
            survivors = proc.worker_pids()
            proc.proc.kill()
            proc.proc.wait(10)
            # Its workers die with it (PR_SET_PDEATHSIG): none is left serving the port.
            await _until(lambda: not any(os.path.exists(f"/proc/{p}") for p in survivors), 10)
            stop.set()
            await asyncio.gather(*writers)
        await asyncio.gather(*watchers)
    finally:
        stop.set()
        proc.kill()

    restarted = ServiceProcess(
        storage, workers=2, extra=["--rate-limit", "0"], http_port=proc.http_port
    ).start()
    try:
        restarted.wait_workers()
        await assert_acknowledged_writes_kept(restarted.url, acked)
        # Every watcher resumes on whichever worker it reaches.
        await assert_watchers_resume_exactly(restarted.url, seen)
    finally:
        assert restarted.stop() == 0

"""Crash safety with a real process: SIGKILL mid-load loses no acknowledged write, and
watchers that resume after the restart see no gap and no duplicate."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import pytest

from tests.support.http_api import (
    assert_acknowledged_writes_kept,
    assert_watchers_resume_exactly,
    record_watch,
)
from tests.support.process import ServiceProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WRITERS = 12
WATCHED = ["c0", "c1", "c2"]


async def _writer(http: httpx.AsyncClient, n: int, acked: list[tuple[str, str, int]]) -> None:
    cluster = f"c{n}"
    for i in range(1000):
        name = f"w{n}-{i}"
        data = base64.b64encode(name.encode()).decode()
        try:
            r = await http.put(
                f"/v1/clusters/{cluster}/affiliates/{name}", json={"data": data, "ttl": 1800}
            )
        except httpx.HTTPError:
            return  # the service died under us
        if r.status_code == 200:
            acked.append((cluster, name, r.json()["revision"]))


async def test_sigkill_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/events.db"
    proc = ServiceProcess(storage, extra=["--rate-limit", "0"]).start()
    acked: list[tuple[str, str, int]] = []
    seen: dict[str, list[int]] = {c: [] for c in WATCHED}
    try:
        watchers = [asyncio.create_task(record_watch(proc.url, c, seen[c])) for c in WATCHED]
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
            writers = [asyncio.create_task(_writer(http, n, acked)) for n in range(WRITERS)]
            while len(acked) < 300:
                await asyncio.sleep(0.02)
            proc.kill()
            await asyncio.gather(*writers)
        await asyncio.gather(*watchers)
    finally:
        proc.kill()

    restarted = ServiceProcess(storage, extra=["--rate-limit", "0"], http_port=proc.http_port)
    restarted.start()
    try:
        await assert_acknowledged_writes_kept(restarted.url, acked)
        await assert_watchers_resume_exactly(restarted.url, seen)
    finally:
        assert restarted.stop() == 0

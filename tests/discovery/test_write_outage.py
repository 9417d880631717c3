"""When the log takes no writes (disk full, read-only filesystem) reads and watches keep
serving, writes get a clear 503, readiness says why without flapping, and it is logged once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

import httpx
import pytest

from discovery.http.app import create_app
from discovery.settings import Settings
from storage.base import NewEvent
from storage.errors import StorageUnavailable
from storage.memory import MemoryEventLog
from tests.support.live import in_process

pytestmark = pytest.mark.anyio


class FillableLog(MemoryEventLog):
    """The memory log, with a disk that can fill up: writes fail, reads go on."""

    full = False

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        if self.full:
            raise StorageUnavailable("database or disk is full")
        return await super().append(stream, events, base_revision=base_revision)

    async def mark_alive(self, at: datetime) -> None:
        if self.full:
            raise StorageUnavailable("database or disk is full")
        await super().mark_alive(at)


async def test_a_full_disk_stops_writes_only(caplog: pytest.LogCaptureFixture) -> None:
    log = FillableLog()
    settings = Settings(rate_limit=0, heartbeat_interval=0.05, gc_interval=0.05)
    async with in_process(settings, event_log=log) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = {"data": "ZA==", "ttl": 600}
            assert (await http.put("/v1/clusters/c/affiliates/a", json=body)).status_code == 200
            log.full = True
            with caplog.at_level(logging.INFO):
                for _ in range(3):
                    put = await http.put("/v1/clusters/c/affiliates/b", json=body)
                    assert put.status_code == 503
                    assert "writes" in put.json()["error"]["message"]
                # Reads and the watch's snapshot keep serving from the projection.
                listing = await http.get("/v1/clusters/c/affiliates")
                assert listing.status_code == 200
                assert [a["id"] for a in listing.json()["affiliates"]] == ["a"]
                assert (await http.get("/v1/clusters/c/events")).status_code == 200
                # Not ready, for a stated reason, and it stays so (no flapping).
                for _ in range(5):
                    ready = await http.get("/readyz")
                    assert ready.status_code == 503
                    assert "disk full" in ready.json()["error"]["message"]
                    await asyncio.sleep(0.05)
                failing = [r for r in caplog.records if "writes to the event log fail" in r.msg]
                assert len(failing) == 1
                skipped = [r for r in caplog.records if r.msg == "maintenance skipped"]
                assert len(skipped) <= 1
                log.full = False
                async with asyncio.timeout(5):
                    while (await http.get("/readyz")).status_code != 200:
                        await asyncio.sleep(0.02)
            assert (await http.put("/v1/clusters/c/affiliates/b", json=body)).status_code == 200
            recovered = [r for r in caplog.records if "succeed again" in r.msg]
            assert len(recovered) == 1

"""Restart time with a large log: replay from empty versus snapshot plus log tail."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.servers import free_port, service_argv, wait_ready
from membership.codec import encode_event, event_type
from membership.events import AffiliateUpdated
from membership.model import Affiliate, Endpoint
from storage.base import NewEvent
from storage.sqlite import SqliteEventLog

PER_CLUSTER = 1000


async def build_log(path: str, affiliates: int) -> int:
    """Write `affiliates` creations (1 KiB data, 2 endpoints) straight into the log."""
    log = await SqliteEventLog.open(path)
    expires = datetime.now(UTC) + timedelta(hours=1)
    data = os.urandom(1024)
    try:
        for start in range(0, affiliates, PER_CLUSTER):
            cluster = f"cluster-{start // PER_CLUSTER}"
            batch = []
            for i in range(start, min(start + PER_CLUSTER, affiliates)):
                endpoints = (Endpoint(os.urandom(16), expires), Endpoint(os.urandom(16), expires))
                event = AffiliateUpdated(affiliate=Affiliate(f"node-{i}", data, endpoints, expires))
                batch.append(NewEvent(event_type(event), encode_event(event)))
            await log.append(cluster, batch)
        return await log.head()
    finally:
        await log.aclose()


def _start_and_time(storage: str) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(service_argv(storage, port), stdout=subprocess.DEVNULL)
    wait_ready(proc, port, "/readyz", timeout=600)
    return proc, port, time.monotonic() - started


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)


async def run(affiliates: int = 100_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/events.db"
        started = time.monotonic()
        head = await build_log(path, affiliates)
        build_seconds = time.monotonic() - started
        storage = f"sqlite:///{path}"

        # First start: no snapshot yet, the whole log is replayed. SIGTERM saves a snapshot.
        proc, _, replay_seconds = _start_and_time(storage)
        _stop(proc)
        # Second start: the snapshot, then nothing (or little) to replay.
        proc, _, snapshot_seconds = _start_and_time(storage)
        _stop(proc)
        size = os.path.getsize(path)
    return {
        "affiliates": affiliates,
        "events": head,
        "db_mb": round(size / 2**20, 1),
        "build_seconds": round(build_seconds, 1),
        "ready_after_replay_s": round(replay_seconds, 2),
        "ready_after_snapshot_s": round(snapshot_seconds, 2),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))

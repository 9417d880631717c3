"""Per-address limits with `--workers 2`: each worker enforces the configured limits on what it
sees, so an abuser spreading connections over the workers gets at most twice a limit, a
client on one connection exactly the limit, and a client on another address (127.0.0.2) is
served within a second throughout."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bystander import bystander_served
from tests.support.process import ServiceProcess

pytestmark = pytest.mark.slow

PER_CLIENT = 20
RATE = 2.0
BURST = 10


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        f"sqlite:///{tmp_path}/events.db",
        workers=2,
        extra=[
            "--rate-limit", str(RATE),
            "--rate-burst", str(BURST),
            "--max-connections-per-client", str(PER_CLIENT),
            "--header-timeout", "5",
        ],
    ).start()  # fmt: skip
    try:
        proc.wait_workers()
        yield proc
    finally:
        proc.stop()


def test_idle_sockets_past_every_workers_cap_are_refused(service: ServiceProcess) -> None:
    extra = 10
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", service.http_port), 5))
            for _ in range(2 * PER_CLIENT + extra)
        ]
        time.sleep(0.5)
        readable, _, _ = select.select(socks, [], [], 1.0)
        refused = [s for s in readable if s.recv(65536).startswith(b"HTTP/1.1 429")]
        # Each worker holds at most PER_CLIENT of them, whichever worker took which.
        assert len(refused) >= extra
        bystander_served(service.url, "bystander")


def test_one_connection_sees_exactly_the_configured_rate(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=5) as http:
        started = time.monotonic()
        codes = [http.get("/v1/clusters/c/affiliates").status_code for _ in range(3 * BURST)]
        elapsed = time.monotonic() - started
        worker = http.get("/healthz").headers["x-discovery-worker"]
    assert set(codes) <= {200, 429}
    # One connection is one worker: the burst, and what the rate refills meanwhile.
    assert BURST <= codes.count(200) <= BURST + RATE * elapsed + 1
    assert codes[:BURST] == [200] * BURST
    assert worker in {"1", "2"}
    bystander_served(service.url, "bystander")


def test_a_flood_over_many_connections_gets_at_most_a_share_per_worker(
    service: ServiceProcess,
) -> None:
    ok = 0
    started = time.monotonic()
    for i in range(6 * BURST):
        # A fresh connection each time, spread over both workers by the kernel.
        r = httpx.get(f"{service.url}/v1/clusters/c/affiliates", timeout=5)
        ok += r.status_code == 200
        if i % BURST == 0:
            bystander_served(service.url, "bystander")
    elapsed = time.monotonic() - started
    assert ok <= 2 * (BURST + RATE * elapsed + 1)
    assert ok < 6 * BURST

"""Connections that cost no token: idle and slowloris sockets, stalled bodies, huge headers,
pipelining without reading. Each is cut off or refused at once, and a client on another
address (127.0.0.2) is served within a second throughout."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.bystander import bystander_served
from tests.support.process import ServiceProcess

pytestmark = pytest.mark.slow

PER_CLIENT = 50


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "memory://",
        extra=[
            "--rate-limit", "0",
            "--max-connections-per-client", str(PER_CLIENT),
            "--header-timeout", "1",
            "--body-timeout", "1",
        ],
    ).start()  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()


def _connect(service: ServiceProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.http_port), timeout=5)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sent before closing; fails if it keeps the socket open."""
    sock.settimeout(seconds)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_idle_sockets_past_the_cap_are_refused_and_the_rest_time_out(
    service: ServiceProcess,
) -> None:
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(_connect(service)) for _ in range(PER_CLIENT)]
        time.sleep(0.2)
        extra = stack.enter_context(_connect(service))
        assert _closed_within(extra, 2).startswith(b"HTTP/1.1 429")
        bystander_served(service.url)
        # Sockets that never send a request are closed after the header timeout.
        for sock in idle:
            assert _closed_within(sock, 5) == b""
    bystander_served(service.url)


def test_slow_headers_are_cut_off(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(10):
                time.sleep(0.3)
                sock.sendall(b"x-slow: 1\r\n")
        assert _closed_within(sock, 5) == b""
        assert time.monotonic() - started < 4
        bystander_served(service.url)


def test_a_stalled_body_is_cut_off(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(
            b"PUT /v1/clusters/c/affiliates/b HTTP/1.1\r\nhost: x\r\n"
            b'content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"data":'
        )
        started = time.monotonic()
        _closed_within(sock, 5)
        assert time.monotonic() - started < 4
    bystander_served(service.url)


def test_a_huge_header_is_refused(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
        )
        assert _closed_within(sock, 5).startswith(b"HTTP/1.1 431")
    bystander_served(service.url)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_pipelining_without_reading_is_bounded(service: ServiceProcess) -> None:
    assert service.proc is not None
    before = _rss_kib(service.proc.pid)
    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
    with contextlib.ExitStack() as stack:
        for _ in range(20):
            sock = stack.enter_context(_connect(service))
            with contextlib.suppress(OSError):
                sock.sendall(request * 2000)  # never reads the answers
        bystander_served(service.url)
        time.sleep(0.5)
        grown_mib = (_rss_kib(service.proc.pid) - before) / 1024
        assert grown_mib < 64, grown_mib
    bystander_served(service.url)

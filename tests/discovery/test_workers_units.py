"""The pieces of `--workers` that need no process: the setting, the handoff a worker reads
from its environment, the header naming the worker, and the held gRPC port."""

from __future__ import annotations

import os
import socket

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from discovery.handoff import ENV, Handoff, tag_responses
from discovery.settings import Settings, cpu_count
from discovery.startup import StartupError, hold
from tests.support.process import free_port

pytestmark = pytest.mark.anyio


def test_one_worker_is_the_default() -> None:
    assert Settings().workers == 1


def test_auto_is_one_worker_per_usable_core() -> None:
    assert Settings(workers="auto").workers == cpu_count() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_workers_must_be_a_positive_integer_or_auto(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(workers=value)


def test_memory_storage_refuses_several_workers() -> None:
    assert Settings(storage="memory://", workers=1).workers == 1
    with pytest.raises(ValidationError, match="memory://"):
        Settings(storage="memory://", workers=2)


def test_a_handoff_round_trips_through_the_environment() -> None:
    handoff = Handoff(
        index=2, supervisor=10, http_fd=3, metrics_fd=None, status_fd=5, metrics_dir="/m"
    )
    assert Handoff.from_env({ENV: handoff.to_env()}) == handoff
    assert Handoff.from_env({}) is None
    assert handoff.fds() == (3, 5)


def test_the_handoff_sockets_are_the_inherited_listeners() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as http,
        socket.create_server(("127.0.0.1", 0)) as m,
    ):
        read_fd, write_fd = os.pipe()
        handoff = Handoff(
            index=1,
            supervisor=os.getpid(),
            http_fd=os.dup(http.fileno()),
            metrics_fd=os.dup(m.fileno()),
            status_fd=write_fd,
            metrics_dir="",
        )
        sockets = handoff.sockets()
        try:
            assert sockets["http"].getsockname() == http.getsockname()
            assert sockets["metrics"].getsockname() == m.getsockname()
            handoff.report("error no\nnewline")
            assert os.read(read_fd, 100) == b"error no newline\n"
        finally:
            for sock in sockets.values():
                sock.close()
            os.close(read_fd)
            os.close(write_fd)


async def test_every_response_names_its_worker() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=tag_responses(app, 3))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for path in ("/x", "/missing"):
            assert (await http.get(path)).headers["x-discovery-worker"] == "3"


def test_a_held_port_admits_only_sockets_that_share_it() -> None:
    port = free_port()
    held = hold(f"127.0.0.1:{port}", "gRPC")
    try:
        # Not listening: nobody is handed a connection through it.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        with pytest.raises(StartupError, match="in use"):
            hold(f"127.0.0.1:{port}", "gRPC")
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        held.close()

"""`--workers N` with real processes: one port each for HTTP, gRPC and metrics served by every
worker, a dead worker replaced, SIGTERM draining them all, start-up errors still one line,
and metrics added up over the workers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from tests.support.process import ServiceProcess, free_port
from tests.support.startup import assert_one_clear_line, listening_port, run_service

pytestmark = pytest.mark.slow

HEADER = "x-discovery-worker"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        f"sqlite:///{tmp_path}/events.db",
        workers=2,
        grpc_port=free_port(),
        metrics_port=free_port(),
        extra=["--rate-limit", "0"],
    ).start()
    try:
        proc.wait_workers()
        yield proc
    finally:
        proc.stop()


def _put(service: ServiceProcess, cluster: str, affiliate: str) -> str:
    """A write on a fresh connection; returns the worker that took it."""
    r = httpx.put(
        f"{service.url}/v1/clusters/{cluster}/affiliates/{affiliate}",
        json={"data": "ZA==", "ttl": 600},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.headers[HEADER]


def _grpc_update(service: ServiceProcess, cluster: str, affiliate: str) -> None:
    """A gRPC write on a fresh connection (its own channel)."""
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        client = cluster_pb2_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]
        request = pb.AffiliateUpdateRequest(
            cluster_id=cluster, affiliate_id=affiliate, affiliate_data=b"d"
        )
        request.ttl.seconds = 600
        client.AffiliateUpdate(request, timeout=10)


def _listed(service: ServiceProcess, cluster: str) -> set[str]:
    listing = httpx.get(f"{service.url}/v1/clusters/{cluster}/affiliates", timeout=10).json()
    return {a["id"] for a in listing["affiliates"]}


def _metrics(service: ServiceProcess) -> str:
    return httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10).text


def _sample(text: str, name: str, labels: str = "") -> float | None:
    """The one value of `name{labels}` in an exposition, None if absent."""
    pattern = "^" + re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)$"
    values = re.findall(pattern, text, re.MULTILINE)
    assert len(values) <= 1, f"{name} exposed {len(values)} times"
    return float(values[0]) if values else None


def _eventually(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_both_workers_serve_one_http_and_one_grpc_port(service: ServiceProcess) -> None:
    workers = {_put(service, "c", f"h{i}") for i in range(40)}
    assert workers == {"1", "2"}
    for i in range(10):
        _grpc_update(service, "c", f"g{i}")
    expected = {f"h{i}" for i in range(40)} | {f"g{i}" for i in range(10)}
    # Whichever worker answers has folded every write, its own or the other's.
    for _ in range(10):
        assert _listed(service, "c") == expected
    pids = service.worker_pids()
    assert len(pids) == 2 and service.proc is not None and service.proc.pid not in pids


def _leaders(service: ServiceProcess) -> dict[str, bool]:
    """Each worker's readiness `leader` flag, by worker."""
    found: dict[str, bool] = {}
    deadline = time.monotonic() + 20
    while len(found) < service.workers:
        assert time.monotonic() < deadline
        r = httpx.get(service.url + "/readyz", timeout=5)
        found[r.headers[HEADER]] = r.json()["leader"]
    return found


def test_exactly_one_worker_leads(service: ServiceProcess) -> None:
    _eventually(lambda: sorted(_leaders(service).values()) == [False, True])
    assert service.output().count("leadership acquired") == 1


def test_workers_on_postgresql(postgres_db: str) -> None:
    service = ServiceProcess(postgres_db, workers=2, extra=["--rate-limit", "0"]).start()
    try:
        service.wait_workers()
        assert {_put(service, "p", f"a{i}") for i in range(30)} == {"1", "2"}
        for _ in range(10):
            assert _listed(service, "p") == {f"a{i}" for i in range(30)}
        _eventually(lambda: sorted(_leaders(service).values()) == [False, True])
    finally:
        assert service.stop() == 0


def test_metrics_add_up_over_the_workers(service: ServiceProcess) -> None:
    taken = [_put(service, "m", f"a{i}") for i in range(30)]
    assert set(taken) == {"1", "2"}
    put = 'api="http",code="200",operation="put_affiliate"'

    def counted() -> bool:
        text = _metrics(service)
        return (
            _sample(text, "discovery_requests_total", put) == 30
            and _sample(text, "discovery_state_affiliates") == 30
            and _sample(text, "discovery_state_clusters") == 1
            and _sample(text, "discovery_leader") == 1
        )

    _eventually(counted)
    # Process-level collectors describe one process: with workers they are left out.
    assert "process_cpu_seconds_total" not in _metrics(service)


def test_watchers_on_both_workers_add_up(service: ServiceProcess) -> None:
    _put(service, "w", "a")
    with contextlib.ExitStack() as open_watches:
        workers: set[str] = set()
        deadline = time.monotonic() + 20
        while workers != {"1", "2"}:
            assert time.monotonic() < deadline
            with contextlib.ExitStack() as attempt:
                # A new client, a new connection: the kernel picks the worker.
                client = attempt.enter_context(httpx.Client(base_url=service.url, timeout=10))
                watch = attempt.enter_context(client.stream("GET", "/v1/clusters/w/watch"))
                if watch.headers[HEADER] not in workers:
                    workers.add(watch.headers[HEADER])
                    open_watches.push(attempt.pop_all())
        _eventually(lambda: _sample(_metrics(service), "discovery_state_subscriptions") == 2)
    _eventually(lambda: _sample(_metrics(service), "discovery_state_subscriptions") == 0)


def test_a_killed_worker_is_replaced_and_service_continues(service: ServiceProcess) -> None:
    first, second = service.worker_pids()
    os.kill(first, signal.SIGKILL)
    # Connections the kernel had already queued on the dead worker's gRPC socket are reset
    # with it (SO_REUSEPORT gives each worker its own queue); clients reconnect, as Talos does.
    _eventually(lambda: first not in service.worker_pids())
    # The other worker serves meanwhile, gRPC as well as HTTP.
    for i in range(10):
        _put(service, "k", f"during{i}")
        _grpc_update(service, "k", f"g-during{i}")
    _eventually(lambda: len(service.worker_pids()) == 2)
    replacement = next(p for p in service.worker_pids() if p != second)
    service.wait_workers()
    assert "worker exited, restarting it" in service.output()
    # And the replacement serves gRPC on the same port once the other one is gone too.
    os.kill(second, signal.SIGKILL)
    _eventually(lambda: second not in service.worker_pids())
    for i in range(10):
        _grpc_update(service, "k", f"g-after{i}")
    assert replacement in service.worker_pids()
    expected = {f"during{i}" for i in range(10)} | {f"g-during{i}" for i in range(10)}
    assert _listed(service, "k") == expected | {f"g-after{i}" for i in range(10)}


def test_sigterm_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    service = ServiceProcess(f"sqlite:///{tmp_path}/events.db", workers=2).start()
    pids = service.wait_workers()
    _put(service, "t", "a")
    assert service.proc is not None
    with (
        httpx.Client(base_url=service.url, timeout=10) as http,
        http.stream("GET", "/v1/clusters/t/watch") as watch,
    ):
        service.proc.send_signal(signal.SIGTERM)
        # The watch ends (its client resumes elsewhere) instead of holding the drain.
        for _ in watch.iter_lines():
            pass
    assert service.proc.wait(30) == 0
    log = service.output()
    assert "workers stopped" in log and "Traceback" not in log
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), "a worker outlived its supervisor"
    service.stop()


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_service("--workers", "2", *args, timeout=timeout)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with listening_port() as port:
        yield port


@pytest.mark.parametrize("flag", ["--http-addr", "--grpc-addr", "--metrics-addr"])
def test_a_port_in_use_is_one_line(flag: str, taken_port: int, tmp_path: Path) -> None:
    result = _run("--storage", f"sqlite:///{tmp_path}/e.db", flag, f"127.0.0.1:{taken_port}")
    assert_one_clear_line(result, f"127.0.0.1:{taken_port}", "in use")


def test_a_grpc_port_held_by_a_running_supervisor_is_refused(service: ServiceProcess) -> None:
    result = _run("--storage", "sqlite:///x.db", "--grpc-addr", f"127.0.0.1:{service.grpc_port}")
    assert_one_clear_line(result, f"127.0.0.1:{service.grpc_port}", "in use")


def test_storage_a_worker_cannot_open_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/data/discovery.db"
    result = _run("--storage", url)
    assert_one_clear_line(result, "storage", str(blocker))


def test_memory_storage_with_workers_is_a_settings_error() -> None:
    result = _run("--storage", "memory://")
    assert result.returncode == 2
    assert "--workers" in result.stderr and "memory://" in result.stderr

"""The service image, run for real: non-root, HTTP and gRPC on published ports, data on a named
volume that outlives the container, a clean SIGTERM with a final snapshot, the health check,
and nothing in the image that a runtime does not need.

The tests share one volume and run in file order (each leaves the state the next expects).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest

from discovery.proto import cluster_pb2
from tests.deploy.live.podman import inspect, logs, podman, remove_containers, remove_volumes
from tests.deploy.live.podman import wait_for as wait_until
from tests.support.grpc_live import stub

pytestmark = [pytest.mark.slow]

CLUSTER = "deploy-live-cluster"
AFFILIATE = "node-a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Service:
    image: str
    volume: str
    name: str
    http_port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        # The hardening of deploy/compose.yaml: read-only root, no capabilities.
        podman(
            "run", "-d", "--name", self.name,
            "-v", f"{self.volume}:/var/lib/discovery",
            "-p", f"127.0.0.1:{self.http_port}:3001", "-p", f"127.0.0.1:{self.grpc_port}:3000",
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-e", "DISCOVERY_LOG_FORMAT=json",
            self.image,
        )  # fmt: skip
        wait_until(f"{self.name} ready", self.ready, timeout=60, interval=0.5)

    def ready(self) -> bool:
        state = inspect(self.name)["State"]
        assert state["Running"], f"{self.name} exited: {logs(self.name)}"
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def remove(self) -> None:
        remove_containers([self.name])


@pytest.fixture(scope="module")
def service(service_image: str) -> Iterator[Service]:
    run = os.urandom(3).hex()
    svc = Service(
        service_image, f"deploy-live-{run}", f"deploy-live-{run}", free_port(), free_port()
    )
    podman("volume", "create", svc.volume)
    try:
        svc.start()
        yield svc
    finally:
        svc.remove()
        remove_volumes([svc.volume])


def _put(url: str, affiliate: str, payload: bytes) -> int:
    body = {"data": base64.b64encode(payload).decode(), "endpoints": [], "ttl": 600}
    response = httpx.put(f"{url}/v1/clusters/{CLUSTER}/affiliates/{affiliate}", json=body)
    response.raise_for_status()
    revision: int = response.json()["revision"]
    return revision


def _affiliates(url: str) -> dict[str, str]:
    response = httpx.get(f"{url}/v1/clusters/{CLUSTER}/affiliates", timeout=5)
    response.raise_for_status()
    return {a["id"]: a["data"] for a in response.json()["affiliates"]}


def test_runs_as_the_unprivileged_user_with_state_in_the_volume(service: Service) -> None:
    assert inspect(service.name)["Config"]["User"] == "10001:10001"
    assert podman("exec", service.name, "id", "-u").strip() == "10001"
    mounts = {m["Destination"]: m for m in inspect(service.name)["Mounts"]}
    assert mounts["/var/lib/discovery"]["Type"] == "volume"
    assert mounts["/var/lib/discovery"]["Name"] == service.volume


def test_answers_http_and_grpc_on_the_published_ports(service: Service) -> None:
    _put(service.url, AFFILIATE, b"sealed")
    assert _affiliates(service.url) == {AFFILIATE: base64.b64encode(b"sealed").decode()}

    async def hello() -> cluster_pb2.HelloResponse:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            request = cluster_pb2.HelloRequest(cluster_id=CLUSTER, client_version="v1.9.0")
            response: cluster_pb2.HelloResponse = await stub(channel).Hello(request, timeout=10)
            return response

    response = asyncio.run(hello())
    # The client address as the service saw it: the port publisher's, inside the container.
    assert len(response.client_ip) in (4, 16)


def test_the_health_check_passes(service: Service) -> None:
    # No systemd here to run it on a timer; `podman healthcheck run` runs it once, as a timer would.
    podman("healthcheck", "run", service.name, timeout=30)
    health = inspect(service.name)["State"].get("Health") or inspect(service.name)["State"].get(
        "Healthcheck"
    )
    assert health is not None and health["Status"] == "healthy"


def test_sigterm_saves_a_snapshot_and_exits_cleanly(service: Service) -> None:
    podman("stop", "--time", "30", service.name, timeout=60)
    state = inspect(service.name)["State"]
    assert state["ExitCode"] == 0, logs(service.name)
    records = [json.loads(line) for line in logs(service.name, 200).splitlines() if line[:1] == "{"]
    saved = [r for r in records if r.get("msg") == "state saved"]
    assert saved and saved[-1]["revision"] >= 1, logs(service.name)
    assert records[-1].get("msg") == "service stopped", logs(service.name)


def test_a_write_survives_recreating_the_container_on_the_volume(service: Service) -> None:
    service.remove()
    service.start()
    assert _affiliates(service.url) == {AFFILIATE: base64.b64encode(b"sealed").decode()}
    revision = _put(service.url, "node-b", b"after")
    assert revision > 1


def test_the_image_has_no_compiler_and_no_source_tree(service_image: str) -> None:
    probe = (
        "for tool in gcc cc c++ make git; do command -v $tool && exit 1; done; "
        "for dir in /src /wheels /opt/kubespan-discovery/src; do [ -e $dir ] && exit 2; done; "
        "python -c 'import discovery, sys; "
        'sys.exit(3 if "site-packages" not in discovery.__file__ else 0)\''
    )
    podman("run", "--rm", "--entrypoint", "sh", service_image, "-c", probe, timeout=60)

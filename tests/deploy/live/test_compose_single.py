"""deploy/compose.yaml started for real: it answers, and its data outlives `down` / `up`."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.deploy_support import DEPLOY
from tests.deploy.live.bases import Bases
from tests.deploy.live.compose import Compose
from tests.deploy.live.podman import podman, wait_for
from tests.deploy.live.test_service_image import free_port

pytestmark = [pytest.mark.slow]

# The tag the compose files name; the session's image is tagged so, so `up` does not rebuild.
COMPOSE_IMAGE = "localhost/kubespan-discovery:0.1.0"
CLUSTER = "deploy-live-single"


def compose_env(bases: Bases, http_port: int, grpc_port: int) -> dict[str, str]:
    return {
        "PYTHON_IMAGE": bases.python,
        "POSTGRES_IMAGE": bases.postgres,
        "NGINX_IMAGE": bases.nginx,
        "DISCOVERY_HTTP_PUBLISH": f"127.0.0.1:{http_port}",
        "DISCOVERY_GRPC_PUBLISH": f"127.0.0.1:{grpc_port}",
    }


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def single(bases: Bases, service_image: str) -> Iterator[tuple[Compose, str]]:
    podman("tag", service_image, COMPOSE_IMAGE)
    http_port = free_port()
    env = compose_env(bases, http_port, free_port())
    env["DISCOVERY_METRICS_PORT"] = str(free_port())
    compose = Compose([DEPLOY / "compose.yaml"], env)
    try:
        yield compose, f"http://127.0.0.1:{http_port}"
    finally:
        compose.down()


def test_single_answers_and_keeps_its_data_across_down_and_up(
    single: tuple[Compose, str],
) -> None:
    compose, url = single
    compose.run("up", "-d")
    wait_for("compose.yaml ready", lambda: ready(url), timeout=90, interval=0.5)
    body = {"data": base64.b64encode(b"kept").decode(), "ttl": 600}
    httpx.put(f"{url}/v1/clusters/{CLUSTER}/affiliates/a", json=body).raise_for_status()

    compose.run("down", "-t", "30")
    assert not ready(url)
    compose.run("up", "-d")
    wait_for("compose.yaml ready again", lambda: ready(url), timeout=90, interval=0.5)
    listed = httpx.get(f"{url}/v1/clusters/{CLUSTER}/affiliates").json()["affiliates"]
    assert [(a["id"], a["data"]) for a in listed] == [("a", body["data"])]

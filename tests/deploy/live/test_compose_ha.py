"""deploy/compose.ha.yaml with its TLS override started for real: three replicas on
PostgreSQL behind nginx terminating TLS.

gRPC and HTTP are checked through TLS on the public port. Then, while a writer and a resuming
watcher run through it: the replica serving the watch is stopped (no acknowledged write may be
lost, the watch must resume without a snapshot and miss no revision), and the PostgreSQL
container restarts (writes resume, nothing is lost).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
import pytest

from discovery.proto import cluster_pb2
from tests.deploy.deploy_support import DEPLOY
from tests.deploy.live.bases import Bases
from tests.deploy.live.compose import Compose
from tests.deploy.live.figures import record
from tests.deploy.live.podman import podman, wait_for
from tests.deploy.live.test_compose_single import COMPOSE_IMAGE, compose_env, ready
from tests.deploy.live.test_service_image import free_port
from tests.deploy.live.traffic import Watcher, Writer
from tests.support.certs import self_signed
from tests.support.grpc_live import stub

pytestmark = [pytest.mark.slow]

T = TypeVar("T")

CLUSTER = "deploy-live-ha"
REPLICAS = ("discovery-1", "discovery-2", "discovery-3")


@dataclass
class HA:
    compose: Compose
    url: str
    """Plaintext HTTP on the proxy (the inside of the deployment)."""
    https: str
    """The public endpoint: TLS on the proxy's 443."""
    grpc_tls: str
    ca: Path


@pytest.fixture
def ha(bases: Bases, service_image: str, tmp_path: Path) -> Iterator[HA]:
    podman("tag", service_image, COMPOSE_IMAGE)
    http_port, https_port = free_port(), free_port()
    env = compose_env(bases, http_port, free_port())
    env["POSTGRES_PASSWORD"] = os.urandom(16).hex()
    for i in range(1, len(REPLICAS) + 1):
        env[f"DISCOVERY_METRICS_PORT_{i}"] = str(free_port())
    tls = tmp_path / "tls"
    tls.mkdir()
    pair = self_signed("localhost")
    (tls / "fullchain.pem").write_bytes(pair.cert)
    (tls / "privkey.pem").write_bytes(pair.key)
    env["DISCOVERY_TLS_DIR"] = str(tls)
    env["DISCOVERY_HTTPS_PUBLISH"] = f"127.0.0.1:{https_port}"
    compose = Compose([DEPLOY / "compose.ha.yaml", DEPLOY / "compose.ha.tls.yaml"], env)
    try:
        yield HA(
            compose,
            f"http://127.0.0.1:{http_port}",
            f"https://127.0.0.1:{https_port}",
            f"127.0.0.1:{https_port}",
            tls / "fullchain.pem",
        )
    finally:
        compose.down()


def _watchers(compose: Compose, replica: str) -> float:
    """The replica's discovery_state_subscriptions gauge, read inside its container."""
    script = (
        "import urllib.request\n"
        "for line in urllib.request.urlopen('http://127.0.0.1:2122/metrics', timeout=3):\n"
        "    if line.startswith(b'discovery_state_subscriptions '):\n"
        "        print(float(line.split()[1]))\n"
    )
    out = podman("exec", compose.container(replica), "python", "-c", script, check=False)
    return float(out.strip() or 0)


def _affiliate_ids(url: str) -> set[str]:
    response = httpx.get(f"{url}/v1/clusters/{CLUSTER}/affiliates", timeout=10)
    response.raise_for_status()
    return {a["id"] for a in response.json()["affiliates"]}


def _history(url: str) -> list[int]:
    revisions: list[int] = []
    with httpx.Client(base_url=url, timeout=10) as http:  # plaintext: the inside
        after = 0
        while page := http.get(
            f"/v1/clusters/{CLUSTER}/events", params={"after": after, "limit": 1000}
        ).json()["events"]:
            revisions += [e["revision"] for e in page]
            after = page[-1]["revision"]
    return revisions


def _retry(read: Callable[[str], T], url: str) -> T | None:
    """One read through the proxy; None on a transport error, so wait_for tries again."""
    try:
        return read(url)
    except httpx.HTTPError:
        return None


def _hello_over_tls(ha: HA) -> bytes:
    async def hello() -> bytes:
        credentials = grpc.ssl_channel_credentials(root_certificates=ha.ca.read_bytes())
        async with grpc.aio.secure_channel(ha.grpc_tls, credentials) as channel:
            request = cluster_pb2.HelloRequest(cluster_id=CLUSTER, client_version="v1.9.0")
            response: cluster_pb2.HelloResponse = await stub(channel).Hello(request, timeout=10)
            return response.client_ip

    return asyncio.run(hello())


def test_ha_survives_a_replica_stop_and_a_postgres_restart(ha: HA) -> None:
    compose, plain = ha.compose, ha.url
    tls = ssl.create_default_context(cafile=str(ha.ca))
    # podman < 4.6 cannot wait for `service_healthy`, so podman-compose starts the replicas
    # at once; starting PostgreSQL first and running its health check does that wait here.
    compose.run("up", "-d", "postgres")
    wait_for("postgres healthy", lambda: compose.healthy("postgres"), timeout=120, interval=1)
    compose.run("up", "-d")
    wait_for("the proxy ready", lambda: ready(plain), timeout=120, interval=0.5)
    for replica in REPLICAS:
        wait_for(f"{replica} ready", partial(compose.healthy, replica), timeout=120, interval=1)
    # Both APIs through TLS on the public port (gRPC routed by path to the h2c upstream).
    assert len(_hello_over_tls(ha)) in (4, 16)
    assert httpx.get(f"{ha.https}/readyz", verify=tls).status_code == 200

    url = ha.https
    writer = Writer(url, CLUSTER, verify=tls).start()
    watcher = Watcher(url, CLUSTER, verify=tls).start()
    try:
        wait_for("writes acknowledged", lambda: len(writer.acked) >= 20, timeout=60)
        serving = wait_for(
            "the replica serving the watch",
            lambda: next((r for r in REPLICAS if _watchers(compose, r) >= 1), None),
            timeout=30,
        )

        stopped_at = time.monotonic()
        compose.run("stop", "-t", "30", serving)
        assert compose.exit_code(serving) == 0, compose.logs(serving)
        wait_for("writes after the stop", lambda: writer.acked_after(stopped_at) >= 40, timeout=60)
        wait_for("the watch resumed", lambda: len(watcher.resumes) >= 1, timeout=60)
        write_gap = writer.longest_gap(stopped_at)
        watch_gap = watcher.resumes[0] - watcher.breaks[0]

        restarted_at = time.monotonic()
        compose.run("restart", "postgres", timeout=180)
        pg_restart = time.monotonic() - restarted_at
        wait_for(
            "writes after the PostgreSQL restart",
            lambda: writer.acked_after(restarted_at) >= 40,
            timeout=120,
        )
        pg_gap = writer.longest_gap(restarted_at)
    finally:
        writer.stop()
        time.sleep(1.0)
        watcher.stop()

    acked = set(writer.acked)
    stored = wait_for("the affiliates read back", lambda: _retry(_affiliate_ids, plain), timeout=60)
    assert acked <= stored, f"acknowledged writes lost: {sorted(acked - stored)[:10]}"
    history = wait_for("the history read back", lambda: _retry(_history, plain), timeout=60)
    seen = [r for r in watcher.revisions if r <= history[-1]]
    assert seen == sorted(set(seen)), "the watch delivered a revision twice or out of order"
    # Writes that landed before the watch subscribed arrive in its first snapshot, not as events.
    assert watcher.first_snapshot is not None
    missed = {r for r in history if r > watcher.first_snapshot} - set(watcher.revisions)
    assert not missed, f"the watch missed revisions {sorted(missed)[:10]}"
    assert watcher.snapshots_after_resume == 0, "a resuming watch was sent a snapshot"

    figures = {
        "replica_stopped": serving,
        "longest_write_gap_replica_stop_s": round(write_gap, 2),
        "watch_resume_s": round(watch_gap, 2),
        "postgres_restart_command_s": round(pg_restart, 2),
        "longest_write_gap_postgres_restart_s": round(pg_gap, 2),
        "writes_acknowledged": len(acked),
        "writes_failed": writer.failures,
        "watch_breaks": len(watcher.breaks),
    }
    record(f"HA failover: {json.dumps(figures)}")

"""deploy/compose.ha.yaml started for real: replicas on PostgreSQL behind nginx.

While a writer and a resuming watcher run through nginx: the replica serving the watch is
stopped (no acknowledged write may be lost, the watch must resume without a snapshot and miss
no revision), then the PostgreSQL container restarts (writes resume, nothing is lost).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import httpx
import pytest

from tests.deploy.deploy_support import DEPLOY
from tests.deploy.live.bases import Bases
from tests.deploy.live.compose import Compose
from tests.deploy.live.conftest import REPORT
from tests.deploy.live.podman import podman, wait_for
from tests.deploy.live.test_compose_single import COMPOSE_IMAGE, compose_env, ready
from tests.deploy.live.test_service_image import free_port
from tests.deploy.live.traffic import Watcher, Writer

pytestmark = [pytest.mark.slow]

T = TypeVar("T")

CLUSTER = "deploy-live-ha"
REPLICAS = ("discovery-1", "discovery-2", "discovery-3")


@pytest.fixture
def ha(bases: Bases, service_image: str) -> Iterator[tuple[Compose, str]]:
    podman("tag", service_image, COMPOSE_IMAGE)
    http_port = free_port()
    env = compose_env(bases, http_port, free_port())
    env["POSTGRES_PASSWORD"] = os.urandom(16).hex()
    for i in range(1, len(REPLICAS) + 1):
        env[f"DISCOVERY_METRICS_PORT_{i}"] = str(free_port())
    compose = Compose(DEPLOY / "compose.ha.yaml", env)
    try:
        yield compose, f"http://127.0.0.1:{http_port}"
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
    with httpx.Client(base_url=url, timeout=10) as http:
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


def test_ha_survives_a_replica_stop_and_a_postgres_restart(ha: tuple[Compose, str]) -> None:
    compose, url = ha
    # podman < 4.6 cannot wait for `service_healthy`, so podman-compose starts the replicas
    # at once; starting PostgreSQL first and running its health check does that wait here.
    compose.run("up", "-d", "postgres")
    wait_for("postgres healthy", lambda: compose.healthy("postgres"), timeout=120, interval=1)
    compose.run("up", "-d")
    wait_for("the proxy ready", lambda: ready(url), timeout=120, interval=0.5)
    for replica in REPLICAS:
        wait_for(f"{replica} ready", partial(compose.healthy, replica), timeout=120, interval=1)

    writer = Writer(url, CLUSTER).start()
    watcher = Watcher(url, CLUSTER).start()
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
    stored = wait_for("the affiliates read back", lambda: _retry(_affiliate_ids, url), timeout=60)
    assert acked <= stored, f"acknowledged writes lost: {sorted(acked - stored)[:10]}"
    history = wait_for("the history read back", lambda: _retry(_history, url), timeout=60)
    seen = [r for r in watcher.revisions if r <= history[-1]]
    assert seen == sorted(set(seen)), "the watch delivered a revision twice or out of order"
    missed = set(history) - set(watcher.revisions)
    assert not missed, f"the watch missed revisions {sorted(missed)[:10]}"
    assert watcher.snapshots_after_resume == 0, "a resuming watch was sent a snapshot"

    figures = {
        "replica_stopped": serving,
        "longest_write_gap_replica_stop_s": round(write_gap, 2),
        "watch_resume_s": round(watch_gap, 2),
        "longest_write_gap_postgres_restart_s": round(pg_gap, 2),
        "writes_acknowledged": len(acked),
        "writes_failed": writer.failures,
        "watch_breaks": len(watcher.breaks),
    }
    REPORT.lines.append(f"HA failover: {json.dumps(figures)}")

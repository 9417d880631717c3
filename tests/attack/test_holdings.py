"""One address cannot fill a cluster (locking its real nodes out) nor spread over a great many
clusters: caps on what a client holds. The real node, on another address (127.0.0.2), keeps
its place: even after the attacker deleted its record, its refresh succeeds."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.process import ServiceProcess

pytestmark = pytest.mark.slow

BODY = {"data": "c2VhbGVk", "ttl": 600}


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "memory://",
        extra=[
            "--rate-limit", "0",
            "--cluster-affiliates-max", "12",
            "--max-affiliates-per-client", "8",
            "--max-clusters-per-client", "3",
        ],
    ).start()  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()


def test_one_address_cannot_fill_a_cluster(service: ServiceProcess) -> None:
    real = httpx.Client(
        base_url=service.url, timeout=5, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    attacker = httpx.Client(base_url=service.url, timeout=5)
    with real, attacker:
        assert real.put("/v1/clusters/c/affiliates/node", json=BODY).status_code == 200
        # The attacker deletes the real node's record and fills what it can.
        assert attacker.delete("/v1/clusters/c/affiliates/node").status_code == 200
        codes = [
            attacker.put(f"/v1/clusters/c/affiliates/junk{i}", json=BODY).status_code
            for i in range(12)
        ]
        assert codes == [200] * 8 + [422] * 4
        refused = attacker.put("/v1/clusters/c/affiliates/junk99", json=BODY)
        assert "too many affiliates from this address" in refused.json()["error"]["message"]
        # Updating what it holds still works; the real node's refresh brings it back.
        assert attacker.put("/v1/clusters/c/affiliates/junk0", json=BODY).status_code == 200
        assert real.put("/v1/clusters/c/affiliates/node", json=BODY).status_code == 200
        listed = {a["id"] for a in real.get("/v1/clusters/c/affiliates").json()["affiliates"]}
        assert "node" in listed and len(listed) == 9
        # Deleting frees the attacker's slot, and only that.
        assert attacker.delete("/v1/clusters/c/affiliates/junk1").status_code == 200
        assert attacker.put("/v1/clusters/c/affiliates/junk1", json=BODY).status_code == 200


def test_one_address_cannot_spread_over_many_clusters(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=5) as attacker:
        codes = [
            attacker.put(f"/v1/clusters/c{i}/affiliates/a", json=BODY).status_code for i in range(5)
        ]
        assert codes == [200, 200, 200, 422, 422]
        assert attacker.delete("/v1/clusters/c0/affiliates/a").status_code == 200
        assert attacker.put("/v1/clusters/c3/affiliates/a", json=BODY).status_code == 200
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=service.url, timeout=5, transport=other) as bystander:
        assert bystander.put("/v1/clusters/c4/affiliates/a", json=BODY).status_code == 200

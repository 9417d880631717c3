"""Hostile records in a real mesh (issue 11, findings 10 and 11): the real nodes keep meshing.

Three agents in network namespaces with real WireGuard, plus two records a member could craft
(it holds the secret): one whose public key is not a key, sorting first by node id, and one
with a valid key that routes 0.0.0.0/0 and ::/0 to itself. Before the agent contained them,
`wg set` refused the broken key and every pass stopped there: no peer was configured at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from kubespan.identity import generate_private_key, public_key_of
from membership.secrets import new_cluster_id, new_cluster_secret
from tests.support.netns import (
    Agent,
    HubService,
    Lab,
    mesh_config,
    missing_requirements,
    peer_states,
    sh,
    wait_for,
)

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

NODES = 3
CONVERGE = 60.0

# Runs inside the hub namespace (where the service listens): seal and publish two records.
_CRAFT = """
import asyncio, os, sys
from datetime import timedelta
from ipaddress import ip_address, ip_network
from discovery.client.http import HttpDiscoveryClient
from membership.record import AffiliateRecord, EndpointAddr, KubeSpanInfo
from membership.sealing import ClusterKey, seal_endpoint_addr, seal_record

url, cluster, secret, good_key = sys.argv[1:5]
key = ClusterKey(secret)
records = [
    ("0-broken", "pk", ()),
    ("0-greedy", good_key, (ip_network("0.0.0.0/0"), ip_network("::/0"))),
]

async def main():
    client = HttpDiscoveryClient(url)
    for node_id, public_key, routes in records:
        record = AffiliateRecord(
            node_id=node_id, addresses=(ip_address("10.99.0.250"),), nodename=node_id,
            kubespan=KubeSpanInfo(public_key=public_key, additional_addresses=routes),
        )
        endpoint = seal_endpoint_addr(key, EndpointAddr(ip_address("10.99.0.250"), 51820))
        await client.update(cluster, node_id, data=seal_record(key, record, os.urandom(12)),
                            endpoints=[endpoint], ttl=timedelta(minutes=5))
    await client.aclose()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, list[Agent]]]:
    missing = missing_requirements()
    if missing:
        message = f"needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"privileged mesh tests cannot run in CI: {message}")
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("hostile")
    agents: list[Agent] = []
    with Lab() as lab:
        service = HubService(lab, f"sqlite:///{tmp / 'events.db'}").start()
        cluster_id, secret = new_cluster_id(os.urandom(32)), new_cluster_secret(os.urandom(32))
        config = tmp / "config.yaml"
        config.write_text(mesh_config(cluster_id, secret, service.url))
        config.chmod(0o600)
        try:
            good_key = public_key_of(generate_private_key())
            craft = [sys.executable, "-c", _CRAFT, service.url, cluster_id, secret, good_key]
            cwd = str(Path(__file__).resolve().parents[2])
            sh(["ip", "netns", "exec", lab.hub, "env", f"PYTHONPATH={cwd}", *craft])
            for _ in range(NODES):
                agents.append(Agent(lab.add_node(), config, tmp / f"n{len(agents) + 1}").start())
            yield lab, agents
        finally:
            for agent in agents:
                agent.stop()
            service.close()


def test_broken_and_greedy_records_do_not_stop_the_mesh(lab: tuple[Lab, list[Agent]]) -> None:
    _, agents = lab
    names = {a.node.hostname for a in agents}
    for agent in agents:
        others = names - {agent.node.hostname}

        def meshed(agent: Agent = agent, others: set[str] = others) -> bool:
            states = peer_states(agent)
            return all(states.get(n) == "up" for n in others)

        try:
            wait_for(f"{agent.node.hostname}: real peers up", meshed, timeout=CONVERGE)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{agent.log()[-3000:]}") from None
    for agent in agents:
        status = agent.status()
        assert status is not None
        assert [(r["node_id"], r["reason"]) for r in status["refused"]] == [
            ("0-broken", "public key is not base64")
        ]
        greedy = next(p for p in status["peers"] if p["node_id"] == "0-greedy")
        assert greedy["allowed_ips"] == ["10.99.0.250/32"]
        assert greedy["warnings"][0] == "refused routes (wider than allowed): 0.0.0.0/0, ::/0"
        # Force routing marks only the peers' networks: the internet is not pulled in.
        nft = agent.node.exec(["nft", "list", "table", "inet", "kubespan"])
        assert "10.99.0.250" in nft and "0.0.0.0/0" not in nft and "::/0" not in nft
    for agent in agents:
        for other in agents:
            if other is not agent:
                probe = partial(agent.node.ping, other.node.ip)
                assert wait_for(f"{agent.node.hostname} pings {other.node.ip}", probe, timeout=15)

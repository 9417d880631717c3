"""The agent with hostile or broken members (issue 11, finding 10): the rest keep meshing."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from kubespan.build import build_agent
from kubespan.device import Device, PeerOpsError
from kubespan.session import Backoff
from kubespan.status import AgentStatus, format_status
from tests.fakes import FakeClock, FakeDiscovery, FakeRunner
from tests.kubespan.fake_kernel import FakeKernel
from tests.kubespan.test_agent import (
    CLUSTER_ID,
    IFACE,
    factory,
    make_agent,
    make_config,
    peer_record,
)


@pytest.mark.anyio
async def test_invalid_key_record_is_refused_and_shown(tmp_path: Path) -> None:
    service = FakeDiscovery()
    bad, _ = peer_record(1, public_key="pk")
    service.put(CLUSTER_ID, bad)
    keys = []
    for n in (2, 3):
        raw, key = peer_record(n)
        service.put(CLUSTER_ID, raw)
        keys.append(key)
    agent, host = make_agent(tmp_path, [service])
    await agent.start()
    agent.sessions[0].apply(await anext(service.client().watch(CLUSTER_ID)))
    await agent.reconcile()
    assert set(host.peers) == set(keys)
    status = AgentStatus(agent).status()
    assert status["refused"] == [
        {"node_id": "node1", "label": "peer1", "reason": "public key is not base64"}
    ]
    # Still a member: the key only stops it from being a peer.
    assert "peer1" in [m["nodename"] for m in AgentStatus(agent).members_status()]
    assert "refused peer peer1 (node1): public key is not base64" in format_status(status)


@pytest.mark.anyio
async def test_failing_peer_does_not_block_the_rest_or_the_routes(tmp_path: Path) -> None:
    service = FakeDiscovery()
    keys = []
    for n in (1, 2, 3):
        raw, key = peer_record(n)
        service.put(CLUSTER_ID, raw)
        keys.append(key)
    host = FakeKernel(failing={keys[0]: "Cannot allocate memory"})
    runner = host.install(FakeRunner())
    agent = build_agent(
        make_config([service.url]),
        tmp_path / "state",
        IFACE,
        device=Device(IFACE, runner, state_dir=tmp_path, mtu=1420, socket_dir=tmp_path),
        clients=factory(service),
        clock=FakeClock(),
        backoff=lambda: Backoff(initial=0.01, maximum=0.05),
        hostname="n1",
        socket_path=None,
    )
    await agent.start()
    agent.sessions[0].apply(await anext(service.client().watch(CLUSTER_ID)))
    with pytest.raises(PeerOpsError, match="Cannot allocate memory") as failed:
        await agent.reconcile()
    assert set(failed.value.failed) == {keys[0]}
    assert set(host.peers) == set(keys[1:])
    assert agent.passes == 1 and host.nft is not None, "routes still written"
    assert "10.99.0.22/31" in host.nft  # peers 2 and 3
    # The next pass retries the failed peer alone.
    del host.failing[keys[0]]
    await agent.reconcile()
    assert set(host.peers) == set(keys)
    assert ip_network("10.99.0.21/32") in [ip_network(a) for a in host.peers[keys[0]].allowed_ips]

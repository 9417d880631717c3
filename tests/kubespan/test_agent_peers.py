"""How the agent drives its peers: endpoint rotation, shown state, force routing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubespan.addressing import ula_prefix
from kubespan.status import AgentStatus
from tests.fakes import FakeClock, FakeDiscovery
from tests.kubespan.test_agent import CLUSTER_ID, eventually, make_agent, peer_record, running


@pytest.mark.anyio
async def test_rotates_to_next_endpoint_when_down(tmp_path: Path) -> None:
    clock = FakeClock()
    service = FakeDiscovery()
    raw, key2 = peer_record(2, endpoints=["10.98.0.22:51820", "10.99.0.22:51820"])
    service.put(CLUSTER_ID, raw)
    agent, host = make_agent(tmp_path, [service], clock=clock)
    await agent.start()
    agent.sessions[0].apply(await anext(service.client().watch(CLUSTER_ID)))
    await agent.reconcile()
    assert host.peers[key2].endpoint == "10.98.0.22:51820"
    assert AgentStatus(agent).peers_status()[0]["state"] == "unknown"
    clock.advance(1.5)  # past endpoint_timeout with no handshake: down, rotate
    await agent.reconcile()
    assert host.peers[key2].endpoint == "10.99.0.22:51820"
    # Judged down, now trying the next candidate: shown down, not "unknown".
    assert AgentStatus(agent).peers_status()[0]["state"] == "down"
    # Packets arrive (rx grows): up, and no further rotation.
    clock.advance(0.5)
    host.peers[key2].rx = 148
    await agent.reconcile()
    assert AgentStatus(agent).peers_status()[0]["state"] == "up"
    clock.advance(3)
    host.peers[key2].rx = 300
    await agent.reconcile()
    assert AgentStatus(agent).peers_status()[0]["state"] == "up"
    assert host.peers[key2].endpoint == "10.99.0.22:51820"
    # Silence for longer than peer_down: down.
    clock.advance(6)
    await agent.reconcile()
    assert AgentStatus(agent).peers_status()[0]["state"] == "down"
    assert host.peers[key2].endpoint == "10.98.0.22:51820"
    # It stays shown down through the next candidate's grace period.
    clock.advance(0.5)
    await agent.reconcile()
    assert AgentStatus(agent).peers_status()[0]["state"] == "down"


@pytest.mark.anyio
async def test_force_routing_sets_and_policy(tmp_path: Path) -> None:
    service = FakeDiscovery()
    raw, _ = peer_record(2, addresses=["10.99.0.22", "192.0.2.22"])
    service.put(CLUSTER_ID, raw)
    agent, host = make_agent(tmp_path, [service])
    async with running(agent):
        await eventually(lambda: host.nft is not None and "10.99.0.22" in host.nft)
        assert host.nft is not None
        assert "192.0.2.22" in host.nft
        # The mesh /64 is routed by the link itself, never marked.
        assert str(ula_prefix(CLUSTER_ID).network_address)[:9] not in host.nft
        nft_runs = host.nft_writes
        await asyncio.sleep(0.2)
        assert host.nft_writes == nft_runs, "unchanged set: nft must not rerun"
        assert host.policy_routing

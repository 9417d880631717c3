"""The agent's lifecycle: restart on an existing link, and leaving the cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes import FakeClock, FakeDevice, FakeDiscovery
from tests.kubespan.test_agent import (
    CLUSTER_ID,
    IFACE,
    eventually,
    make_agent,
    peer_record,
    running,
)


@pytest.mark.anyio
async def test_restart_adopts_link_and_peers(tmp_path: Path) -> None:
    service = FakeDiscovery()
    raw, key2 = peer_record(2, endpoints=["10.98.0.22:51820", "10.99.0.22:51820"])
    service.put(CLUSTER_ID, raw)
    host, clock = FakeDevice(interface=IFACE), FakeClock()
    agent, _ = make_agent(tmp_path, [service], host=host, clock=clock)
    async with running(agent):
        await eventually(lambda: key2 in host.peers)
    assert host.link == IFACE, "a plain stop keeps the link"
    # What it had converged on: the second candidate, with a live session.
    host.peers[key2].endpoint = "10.99.0.22:51820"
    host.peers[key2].handshake = int(clock.now.timestamp()) - 2
    creates = host.creates
    again, _ = make_agent(tmp_path, [service], host=host, clock=clock)
    async with running(again):
        await eventually(lambda: again.passes >= 3)
        assert again.identity is not None and agent.identity is not None
        assert again.identity.node_id == agent.identity.node_id
        assert host.creates == creates, "the link is adopted, not created again"
        # The working endpoint is kept, not reset to the first candidate.
        assert host.peers[key2].endpoint == "10.99.0.22:51820"
        assert host.policy_routing


@pytest.mark.anyio
async def test_leave_deletes_everywhere_and_tears_down(tmp_path: Path) -> None:
    a = FakeDiscovery(url="http://a.test:3001")
    b = FakeDiscovery(url="http://b.test:3001")
    agent, host = make_agent(tmp_path, [a, b])
    task = asyncio.create_task(agent.run())
    await eventually(lambda: a.updates and b.updates)
    result = await agent.leave()
    await task
    assert agent.identity is not None
    node_id = agent.identity.node_id
    assert a.deletes == b.deletes == [(CLUSTER_ID, node_id)]
    assert result == {"node_id": node_id, "deleted": [a.url, b.url], "errors": {}}
    assert host.link is None
    assert not host.policy_routing
    assert host.nft is not None and "delete table inet kubespan" in host.nft
    assert host.calls[-1] == "teardown"
    assert agent.left
    updates = len(a.updates)
    await asyncio.sleep(0.1)
    assert len(a.updates) == updates, "nothing republishes after leaving"


@pytest.mark.anyio
async def test_leave_reports_unreachable_service(tmp_path: Path) -> None:
    service = FakeDiscovery()
    service.down = True
    agent, _ = make_agent(tmp_path, [service])
    result = await agent.leave()
    assert result["deleted"] == []
    assert service.url in result["errors"]  # type: ignore[operator]

"""The agent observes WireGuard between reconciles: status and mesh health follow each read."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from kubespan.agent import Agent
from kubespan.build import build_agent
from kubespan.config import load_config
from kubespan.session import Backoff
from kubespan.status import AgentStatus
from membership.health import HealthState, MeshHealth, PeerHealth
from membership.sealing import open_affiliate, seal_record
from tests.fakes import FakeClock, FakeDevice, FakeDiscovery
from tests.kubespan.test_agent import (
    CLUSTER_ID,
    IFACE,
    KEY,
    SECRET,
    factory,
    make_config,
    peer_record,
)


def _config(url: str) -> str:
    # Production timings except the TTL: the 30 s reconcile tick never fires in this test.
    return (
        f"cluster: {{id: '{CLUSTER_ID}', secret: '{SECRET}'}}\n"
        f"discovery: {{endpoints: ['{url}']}}\n"
        "timing: {refresh: 5s, ttl: 10s}\n"
    )


async def _wait(predicate: object, timeout: float) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_a_handshake_shows_up_within_a_second_without_a_reconcile(tmp_path: Path) -> None:
    clock = FakeClock()
    service = FakeDiscovery()
    raw, key2 = peer_record(2)
    service.put(CLUSTER_ID, raw)
    host = FakeDevice(interface=IFACE)
    agent = _agent(tmp_path, service, host, clock)
    task = asyncio.create_task(agent.run())
    try:
        await _wait(lambda: key2 in host.peers, 5)
        status = AgentStatus(agent)
        assert status.peers_status()[0]["state"] == "unknown"
        assert status.mesh_status()["links"] == []  # not judged yet: nothing published
        passes = agent.passes
        # The remote side answers: WireGuard reports a handshake and traffic.
        host.peers[key2].handshake = int(clock.advance(1).timestamp())
        host.peers[key2].rx = 148
        await _wait(lambda: status.peers_status()[0]["state"] == "up", 1.5)
        assert agent.passes == passes and agent.observations > 0

        # Its view goes into our record: the peer, up, traffic in, a live session.
        def published_health() -> MeshHealth | None:
            data = service.updates[-1][2]
            assert data is not None
            return open_affiliate(KEY, data, ()).record.mesh_health

        await _wait(lambda: published_health() is not None, 2)
        health = published_health()
        assert health is not None
        (peer,) = health.peers
        assert (peer.state, peer.receiving, peer.session) == (HealthState.UP, True, True)
        mesh = status.mesh_status()
        nodes: Any = mesh["nodes"]
        assert [n["name"] for n in nodes] == ["n1", "peer2"]
        assert mesh["links"] == [
            {"from": "n1", "to": "peer2", "state": "up", "receiving": True, "session": True,
             "handshake_age": 0, "one_way": False},
        ]  # fmt: skip
    finally:
        agent.stop()
        await task


def _agent(tmp_path: Path, service: FakeDiscovery, host: FakeDevice, clock: FakeClock) -> Agent:
    return build_agent(
        load_config(_config(service.url)),
        tmp_path / "state",
        IFACE,
        device=host,
        clients=factory(service),
        clock=clock,
        backoff=lambda: Backoff(initial=0.01, maximum=0.05),
        hostname="n1",
        socket_path=None,
    )


@pytest.mark.anyio
async def test_a_change_of_mesh_health_alone_costs_no_pass(tmp_path: Path) -> None:
    service = FakeDiscovery()
    raw, key2 = peer_record(2)
    service.put(CLUSTER_ID, raw)
    host = FakeDevice(interface=IFACE)
    agent = _agent(tmp_path, service, host, FakeClock())
    task = asyncio.create_task(agent.run())
    try:
        await _wait(lambda: key2 in host.peers, 5)
        passes = agent.passes
        record = open_affiliate(KEY, raw.data, ()).record
        for t in range(10):
            # The peer republishes its record with a new view of its own peers, nothing else.
            view = MeshHealth(observed_at=t, peers=(PeerHealth(key_id=bytes(4)),))
            data = seal_record(KEY, replace(record, mesh_health=view), os.urandom(12))
            service.put(CLUSTER_ID, replace(raw, data=data))
            await asyncio.sleep(0.08)
        assert agent.passes == passes
        # A change a peer spec depends on (a new peer) still reconciles at once.
        raw3, key3 = peer_record(3)
        service.put(CLUSTER_ID, raw3)
        await _wait(lambda: key3 in host.peers, 1)
        assert agent.passes > passes
    finally:
        agent.stop()
        await task


@pytest.mark.anyio
async def test_a_peer_down_is_poked_through_the_mesh_on_every_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    service = FakeDiscovery()
    raw, _ = peer_record(2)
    service.put(CLUSTER_ID, raw)
    poked: list[IPv6Address] = []
    agent = build_agent(
        make_config([service.url]),  # endpoint timeout 1 s
        tmp_path / "state",
        IFACE,
        device=FakeDevice(interface=IFACE),
        clients=factory(service),
        clock=clock,
        hostname="n1",
        socket_path=None,
        poke=poked.append,
    )
    await agent.start()
    agent.sessions[0].apply(await anext(service.client().watch(CLUSTER_ID)))
    await agent.reconcile()
    assert poked == []  # unknown: its first endpoint is on trial
    clock.advance(1.5)
    await agent.reconcile()
    await agent.reconcile(full=False)
    address = open_affiliate(KEY, raw.data, ()).record.kubespan
    assert address is not None and poked == [address.address, address.address]

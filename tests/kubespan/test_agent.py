from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from discovery.client import DiscoveryClient, RawAffiliate
from kubespan.addressing import eui64_address, ula_prefix
from kubespan.agent import Agent
from kubespan.build import build_agent
from kubespan.config import Config, load_config
from kubespan.identity import generate_private_key, public_key_of
from kubespan.plan import RemovePeer
from kubespan.session import Backoff
from kubespan.status import AgentStatus
from membership.record import AffiliateRecord, EndpointAddr, KubeSpanInfo
from membership.sealing import ClusterKey, open_affiliate, seal_endpoint_addr, seal_record
from tests.fakes import FakeClock, FakeDevice, FakeDiscovery

CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = base64.b64encode(bytes(32)).decode()
KEY = ClusterKey(SECRET)
IFACE = "kstest0"


def make_config(endpoints: Sequence[str], extra: str = "") -> Config:
    urls = ", ".join(f"'{u}'" for u in endpoints)
    return load_config(
        f"cluster: {{id: '{CLUSTER_ID}', secret: '{SECRET}'}}\n"
        f"discovery: {{endpoints: [{urls}]}}\n"
        "timing: {reconcile: 50ms, refresh: 400ms, ttl: 10s, endpoint_timeout: 1s,"
        " peer_down: 5s}\n" + extra
    )


def factory(*services: FakeDiscovery) -> Callable[[str], DiscoveryClient]:
    by_url = {s.url: s for s in services}
    return lambda url, **_: by_url[url].client()


def make_agent(
    tmp_path: Path,
    services: Sequence[FakeDiscovery],
    *,
    host: FakeDevice | None = None,
    clock: FakeClock | None = None,
    extra: str = "",
) -> tuple[Agent, FakeDevice]:
    host = host or FakeDevice(interface=IFACE)
    agent = build_agent(
        make_config([s.url for s in services], extra),
        tmp_path / "state",
        IFACE,
        device=host,
        clients=factory(*services),
        clock=clock or FakeClock(),
        backoff=lambda: Backoff(initial=0.01, maximum=0.05),
        hostname="n1",
        socket_path=None,
    )
    return agent, host


@asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: (bool(agent.sessions) and agent.passes > 0) or task.done())
        if task.done():
            task.result()
        yield agent
    finally:
        agent.stop()
        # A bounded wait: an agent that does not stop is a bug to report, not a hung run.
        await asyncio.wait_for(task, 10)


async def eventually(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def peer_record(
    n: int,
    *,
    key: ClusterKey = KEY,
    endpoints: Sequence[str] = (),
    addresses: Sequence[str] = (),
    public_key: str | None = None,
) -> tuple[RawAffiliate, str]:
    """A sealed record for a fake node `n`; returns it and its WireGuard public key."""
    public_key = public_key or public_key_of(generate_private_key())
    address = eui64_address(ula_prefix(CLUSTER_ID), f"02:00:00:00:01:{n:02x}")
    record = AffiliateRecord(
        node_id=f"node{n}",
        addresses=tuple(ip_address(a) for a in addresses or [f"10.99.0.{20 + n}"]),
        hostname=f"peer{n}",
        nodename=f"peer{n}",
        kubespan=KubeSpanInfo(public_key=public_key, address=address),
    )
    eps = [EndpointAddr(ip_address(e.split(":")[0]), int(e.split(":")[1])) for e in endpoints]
    sealed = tuple(
        seal_endpoint_addr(key, e) for e in eps or [EndpointAddr(record.addresses[0], 51820)]
    )
    data = seal_record(key, record, os.urandom(12))
    return RawAffiliate(f"node{n}", data, sealed), public_key


@pytest.mark.anyio
async def test_publishes_own_record_on_start(tmp_path: Path) -> None:
    service = FakeDiscovery()
    agent, host = make_agent(tmp_path, [service])
    async with running(agent):
        await eventually(lambda: service.updates)
        cluster, node_id, data, endpoints, ttl = service.updates[0]
        assert agent.identity is not None
        assert (cluster, node_id, ttl) == (
            CLUSTER_ID,
            agent.identity.node_id,
            timedelta(seconds=10),
        )
        assert data is not None
        decoded = open_affiliate(KEY, data, endpoints)
        record = decoded.record
        assert record.nodename == "n1"
        # Like Talos: the mesh address is published last among the addresses, never as an
        # endpoint.
        assert record.addresses == (ip_address("10.99.0.11"), agent.address)
        assert all(e.ip != agent.address for e in decoded.endpoints)
        assert record.machine_type == "worker"
        assert record.kubespan is not None
        assert record.kubespan.public_key == agent.identity.public_key
        assert record.kubespan.address == eui64_address(ula_prefix(CLUSTER_ID), host.mac)
        # Own IPs first, then the public IP the service saw (reference 1.3).
        assert [str(e) for e in decoded.endpoints] == ["10.99.0.11:51820", "203.0.113.7:51820"]
        # The link is up and configured from the identity.
        assert host.link == IFACE and host.link_kind == "tun"
        assert host.private_key is not None
        assert public_key_of(host.private_key) == agent.identity.public_key
        assert (host.listen_port, host.fwmark) == (51820, 0x20)
        assert host.policy_routing


@pytest.mark.anyio
async def test_republishes_on_local_change_and_refresh_only(tmp_path: Path) -> None:
    service = FakeDiscovery()
    agent, host = make_agent(tmp_path, [service])
    async with running(agent):
        await eventually(lambda: service.updates)
        first = service.updates[0][2]
        # Watch traffic from other nodes must not echo back as publishes (feedback loop).
        for n in range(5):
            service.put(CLUSTER_ID, peer_record(n)[0])
        await asyncio.sleep(0.2)
        assert len(service.updates) == 1
        # A new local address is a new record: published at once, with a fresh nonce.
        host.addresses.append(("eth0", "192.0.2.50", 24))
        await eventually(lambda: len(service.updates) == 2, timeout=1.0)
        second = service.updates[1][2]
        assert second is not None and first is not None and second[:12] != first[:12]
        assert ip_address("192.0.2.50") in open_affiliate(KEY, second, ()).record.addresses
        # Then only the refresh timer republishes, with the same sealed bytes.
        await eventually(lambda: len(service.updates) == 3, timeout=1.0)
        assert service.updates[2][2] == second


@pytest.mark.anyio
async def test_merges_records_from_two_services(tmp_path: Path) -> None:
    a = FakeDiscovery(url="http://a.test:3001")
    b = FakeDiscovery(url="http://b.test:3001", client_ip="198.51.100.9")
    shared_key = public_key_of(generate_private_key())
    raw_a, _ = peer_record(2, endpoints=["10.99.0.22:51820"], public_key=shared_key)
    raw_b, _ = peer_record(2, endpoints=["192.0.2.22:51820"], public_key=shared_key)
    only_b, key3 = peer_record(3)
    a.put(CLUSTER_ID, raw_a)
    b.put(CLUSTER_ID, raw_b)
    b.put(CLUSTER_ID, only_b)
    agent, host = make_agent(tmp_path, [a, b])
    async with running(agent):
        await eventually(lambda: set(host.peers) == {shared_key, key3})
        peers = {p["label"]: p for p in AgentStatus(agent).peers_status()}
        # Endpoints are unioned in configured service order; the first one is tried first.
        assert peers["peer2"]["endpoints"] == ["10.99.0.22:51820", "192.0.2.22:51820"]
        assert host.peers[shared_key].endpoint == "10.99.0.22:51820"
        assert host.peers[shared_key].preshared_key == KEY.wireguard_psk
        assert {m["nodename"] for m in AgentStatus(agent).members_status()} == {
            "n1",
            "peer2",
            "peer3",
        }
        # Both services' view of us carries both public IPs.
        await eventually(lambda: a.updates and b.updates)
        assert agent.own is not None and agent.own.local is not None
        assert [str(e) for e in agent.own.local.endpoints] == [
            "10.99.0.11:51820",
            "203.0.113.7:51820",
            "198.51.100.9:51820",
        ]
        # One service dying changes nothing while the other still answers.
        a.down = True
        b.remove(CLUSTER_ID, "node3")
        await eventually(lambda: set(host.peers) == {shared_key})


@pytest.mark.anyio
async def test_discovery_outage_keeps_peers(tmp_path: Path) -> None:
    service = FakeDiscovery()
    raw, key2 = peer_record(2)
    service.put(CLUSTER_ID, raw)
    agent, host = make_agent(tmp_path, [service])
    async with running(agent):
        await eventually(lambda: key2 in host.peers)
        service.down = True
        await eventually(lambda: not agent.sessions[0].connected)
        passes = agent.passes
        await eventually(lambda: agent.passes >= passes + 5)
        assert not [op for op in host.applied if isinstance(op, RemovePeer)]
        assert key2 in host.peers
        status = agent.sessions[0].status()
        assert status["connected"] is False
        assert "unreachable" in str(status["last_error"])
        # Back: the session reconnects by itself, resumes after its revision, republishes.
        updates = len(service.updates)
        service.down = False
        await eventually(lambda: agent.sessions[0].connected and len(service.updates) > updates)
        assert service.watch_since[-1] == agent.sessions[0].revision or service.watch_since[-1]


@pytest.mark.anyio
async def test_undecryptable_records_are_counted_not_fatal(tmp_path: Path) -> None:
    service = FakeDiscovery()
    good, key2 = peer_record(2)
    foreign, _ = peer_record(3, key=ClusterKey(OTHER_SECRET))
    service.put(CLUSTER_ID, good)
    service.put(CLUSTER_ID, foreign)
    service.put(CLUSTER_ID, RawAffiliate("garbage", b"\x00" * 40, ()))
    service.put(CLUSTER_ID, RawAffiliate("endpoint-only", b"", (b"\x01" * 16,)))
    agent, host = make_agent(tmp_path, [service])
    async with running(agent):
        await eventually(lambda: key2 in host.peers)
        status = agent.sessions[0].status()
        # Empty data is "not published yet", not a failure.
        assert status["undecryptable"] == 2
        assert status["affiliates"] == 1
        assert AgentStatus(agent).status()["sessions"] == [status]
        # A later good record from the same id clears it.
        service.put(CLUSTER_ID, RawAffiliate("garbage", peer_record(4)[0].data, ()))
        await eventually(lambda: agent.sessions[0].status()["undecryptable"] == 1)
        assert agent.sessions[0].decrypt_failures >= 2


@pytest.mark.anyio
async def test_deleted_affiliate_removes_peer(tmp_path: Path) -> None:
    service = FakeDiscovery()
    raw, key2 = peer_record(2)
    service.put(CLUSTER_ID, raw)
    agent, host = make_agent(tmp_path, [service])
    async with running(agent):
        await eventually(lambda: key2 in host.peers)
        service.remove(CLUSTER_ID, "node2")
        await eventually(lambda: key2 not in host.peers)
        assert RemovePeer(IFACE, key2) in host.applied


@pytest.mark.anyio
async def test_redirect_is_followed(tmp_path: Path) -> None:
    target = FakeDiscovery(url="http://b.test:3001")
    origin = FakeDiscovery(url="http://a.test:3001", redirect=target.url)
    agent, _ = make_agent(tmp_path, [origin])
    agent._clients = factory(origin, target)
    async with running(agent):
        await eventually(lambda: target.updates)
        assert agent.sessions[0].url == target.url
        assert not origin.updates


def test_backoff_sequence() -> None:
    backoff = Backoff(rand=lambda: 0.5)
    delays = [backoff.next() for _ in range(14)]
    assert delays[:3] == [0.5, 0.75, 1.125]
    assert delays[-1] == 60.0
    backoff.reset()
    assert backoff.next() == 0.5
    low, high = Backoff(rand=lambda: 0.0), Backoff(rand=lambda: 0.999999)
    assert low.next() == 0.25
    assert high.next() == pytest.approx(0.75, rel=1e-5)


def test_excluded_networks_and_advertised_networks_are_published(tmp_path: Path) -> None:
    agent, host = make_agent(
        tmp_path,
        [FakeDiscovery()],
        extra="mesh: {advertised_networks: ['10.244.1.0/24'],"
        " excluded_networks: ['192.0.2.0/24']}\n",
    )
    asyncio.run(agent.start())
    assert agent.own is not None and agent.own.local is not None
    kubespan = agent.own.local.record.kubespan
    assert kubespan is not None
    assert kubespan.additional_addresses == (ip_network("10.244.1.0/24"),)
    assert kubespan.exclude_advertised_addresses == (ip_network("192.0.2.0/24"),)
    assert host.link == IFACE

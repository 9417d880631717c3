"""Clusters of Talos-behaving clients against a real gRPC listener (upstream's client tests:
cluster simulator, affiliate expiry, redirect), with real sealing of data and endpoints."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from membership.record import AffiliateRecord, EndpointAddr
from membership.sealing import ClusterKey
from membership.secrets import new_cluster_id, new_cluster_secret, new_node_id
from tests.support.grpc_live import grpc_live, grpc_settings
from tests.support.process import free_port
from tests.support.talos_client import Backoff, TalosClient

pytestmark = pytest.mark.anyio

FAST = grpc_settings(gc_interval=0.2, heartbeat_interval=0.1)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.02, maximum=0.5)


def own_endpoint(i: int) -> EndpointAddr:
    return EndpointAddr(IPv4Address(f"10.0.{i // 250}.{i % 250 + 1}"), 51820)


def harvested_endpoint(i: int) -> EndpointAddr:
    return EndpointAddr(IPv4Address(f"192.168.{i // 250}.{i % 250 + 1}"), 51821)


def make_clients(
    target: str, n: int, *, ttl: timedelta = timedelta(minutes=30)
) -> list[TalosClient]:
    cluster_id = new_cluster_id(os.urandom(32))
    key = ClusterKey(new_cluster_secret(os.urandom(32)))
    return [
        TalosClient(
            target, cluster_id, key, new_node_id(os.urandom(32)), ttl=ttl, backoff=fast_backoff()
        )
        for _ in range(n)
    ]


def record(client: TalosClient, i: int) -> AffiliateRecord:
    return AffiliateRecord(
        node_id=client.node_id,
        addresses=(own_endpoint(i).ip,),
        hostname=f"node-{i}.example",
        nodename=f"node-{i}",
        machine_type="worker",
        operating_system="Talos (v1.9.0)",
    )


@asynccontextmanager
async def running(clients: Sequence[TalosClient]) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(c.run()) for c in clients]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def sees_everyone_with_two_endpoints(clients: Sequence[TalosClient]) -> bool:
    expected = {c.node_id: {own_endpoint(i), harvested_endpoint(i)} for i, c in enumerate(clients)}
    for client in clients:
        others = {k: v for k, v in expected.items() if k != client.node_id}
        seen = {k: set(a.endpoints) for k, a in client.affiliates.items()}
        if seen != others:
            return False
        if any(len(a.endpoints) != 2 for a in client.affiliates.values()):
            return False
    return True


@pytest.mark.parametrize("n", [5, 15, 50])
async def test_cluster_simulation_everyone_sees_everyone_with_two_endpoints(n: int) -> None:
    async with grpc_live() as live:
        clients = make_clients(live.target, n)
        for i, client in enumerate(clients):
            neighbour = (i + 1) % n
            client.set_local_data(
                record(client, i),
                [own_endpoint(i)],
                # What this node observed of its neighbour: a second endpoint for it.
                {clients[neighbour].node_id: [harvested_endpoint(neighbour)]},
            )
        async with running(clients):
            await eventually(
                lambda: sees_everyone_with_two_endpoints(clients), 30.0, "everyone sees everyone"
            )
        # The records decrypt to what each node published.
        first, second = clients[0], clients[1]
        assert first.affiliates[second.node_id].record == record(second, 1)
        assert first.public_ip == IPv4Address("127.0.0.1")
        _, stored = live.service.list_affiliates(first.cluster_id)
        assert len(stored) == n and all(len(a.endpoints) == 2 for a in stored)


async def test_a_stopped_client_expires_with_a_one_second_ttl() -> None:
    async with grpc_live(FAST) as live:
        clients = make_clients(live.target, 3, ttl=timedelta(seconds=1))
        for i, client in enumerate(clients):
            client.set_local_data(record(client, i), [own_endpoint(i)])
        async with running(clients) as tasks:
            await eventually(
                lambda: all(len(c.affiliates) == 2 for c in clients), 10.0, "all connected"
            )
            # Refreshing every TTL/2 keeps the others alive past several TTLs.
            await asyncio.sleep(1.5)
            assert all(len(c.affiliates) == 2 for c in clients)
            gone = clients[2]
            tasks[2].cancel()
            await eventually(
                lambda: all(gone.node_id not in c.affiliates for c in clients[:2]),
                10.0,
                "the stopped client expired",
            )
            assert all(len(c.affiliates) == 1 for c in clients[:2])
        assert gone.node_id not in {a.id for a in live.service.list_affiliates(gone.cluster_id)[1]}


async def test_delete_local_affiliate_removes_it_for_everyone() -> None:
    async with grpc_live() as live:
        clients = make_clients(live.target, 3)
        for i, client in enumerate(clients):
            client.set_local_data(record(client, i), [own_endpoint(i)])
        async with running(clients):
            await eventually(lambda: all(len(c.affiliates) == 2 for c in clients), 10.0, "joined")
            clients[0].delete_local_affiliate()
            await eventually(
                lambda: all(clients[0].node_id not in c.affiliates for c in clients[1:]),
                10.0,
                "the deleted affiliate disappeared",
            )


async def test_a_redirected_client_ends_up_on_the_target_server() -> None:
    async with grpc_live() as b, grpc_live(grpc_settings(redirect_endpoint=b.target)) as a:
        redirected, direct = make_clients(a.target, 2)
        direct.endpoint = b.target
        for i, client in enumerate((redirected, direct)):
            client.set_local_data(record(client, i), [own_endpoint(i)])
        async with running([redirected, direct]):
            await eventually(
                lambda: (
                    redirected.node_id in direct.affiliates
                    and direct.node_id in redirected.affiliates
                ),
                10.0,
                "both meet on server B",
            )
        assert redirected.endpoint == b.target
        assert a.service.list_affiliates(redirected.cluster_id)[1] == []
        assert len(b.service.list_affiliates(redirected.cluster_id)[1]) == 2


async def test_clients_reconnect_after_a_server_restart(tmp_path: Path) -> None:
    port = free_port()
    settings = grpc_settings(
        storage=f"sqlite:///{tmp_path}/events.db", grpc_addr=f"127.0.0.1:{port}"
    )
    clients = make_clients(f"127.0.0.1:{port}", 2)
    for i, client in enumerate(clients):
        client.set_local_data(record(client, i), [own_endpoint(i)])
    # The clients start first: they keep retrying Hello (with backoff) until a server is up.
    async with running(clients):
        async with grpc_live(settings):
            await eventually(lambda: all(len(c.affiliates) == 1 for c in clients), 10.0, "joined")
        async with grpc_live(settings) as restarted:
            await eventually(lambda: all(c.connections >= 2 for c in clients), 15.0, "reconnected")
            await eventually(lambda: all(len(c.affiliates) == 1 for c in clients), 10.0, "resynced")
            # Both affiliates are on the restarted server (from the log and the refresh).
            assert len(restarted.service.list_affiliates(clients[0].cluster_id)[1]) == 2

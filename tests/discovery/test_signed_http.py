"""Signed writes over real HTTP: a locked cluster refuses strangers, copies and replays; an
open cluster keeps Talos' unsigned writers and protects bound records; eviction."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from discovery.client import ClientError
from discovery.client.http import HttpDiscoveryClient
from discovery.client.signing import RequestSigner
from tests.discovery.signing_support import LOCKED, OPEN, member, revocation, stranger
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.anyio
TTL = timedelta(minutes=5)


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    async with live_server() as live:
        yield live


def client(server: LiveServer, signer: RequestSigner | None = None) -> HttpDiscoveryClient:
    return HttpDiscoveryClient(server.url, signer=signer)


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests on and keeps a copy of each: what an eavesdropper on the path has."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.seen.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def replay(server: LiveServer, request: httpx.Request, **changes: object) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        copy = http.build_request(
            request.method,
            str(changes.get("url", request.url)),
            headers=request.headers,
            content=changes.get("content", request.content),  # type: ignore[arg-type]
        )
        return await http.send(copy)


async def test_members_write_and_delete_their_own_records(server: LiveServer) -> None:
    a = member()
    async with client(server, a) as http:
        await http.update(LOCKED, a.node_id, data=b"sealed", endpoints=[b"ep"], ttl=TTL)
        assert [x.id for x in await http.list(LOCKED)] == [a.node_id]
        await http.update(LOCKED, a.node_id, data=None, endpoints=[b"ep2"], ttl=TTL)
        await http.delete(LOCKED, a.node_id)
        assert await http.list(LOCKED) == []


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (None, "cluster is locked: writes must be signed by a member node (HTTP 401)"),
        (stranger, "node key is not endorsed by the cluster key (HTTP 401)"),
    ],
)
async def test_strangers_cannot_add_records(
    server: LiveServer, writer: object, message: str
) -> None:
    signer = stranger() if writer is stranger else None
    affiliate = signer.node_id if signer else "junk"
    async with client(server, signer) as http:
        with pytest.raises(ClientError, match=re.escape(message)) as refused:
            await http.update(LOCKED, affiliate, data=b"x", endpoints=[], ttl=TTL)
        assert not refused.value.retryable
        assert await http.list(LOCKED) == []


async def test_a_stranger_cannot_change_delete_or_fill_a_locked_cluster(server: LiveServer) -> None:
    a, b = member(), member()
    async with client(server, a) as owner, client(server) as attacker, client(server, b) as other:
        await owner.update(LOCKED, a.node_id, data=b"mine", endpoints=[b"e"], ttl=TTL)
        before = await owner.list(LOCKED)
        with pytest.raises(ClientError, match=r"cluster is locked.*HTTP 401"):
            await attacker.update(LOCKED, a.node_id, data=b"evil", endpoints=[], ttl=TTL)
        with pytest.raises(ClientError, match=r"cluster is locked.*HTTP 401"):
            await attacker.delete(LOCKED, a.node_id)
        # Another member's key does not make a record its own.
        with pytest.raises(ClientError, match=r"only write its own affiliate.*HTTP 403"):
            await other.update(LOCKED, a.node_id, data=b"evil", endpoints=[], ttl=TTL)
        with pytest.raises(ClientError, match=r"only write its own affiliate.*HTTP 403"):
            await other.delete(LOCKED, a.node_id)
        for i in range(50):
            with pytest.raises(ClientError, match="HTTP 401"):
                await attacker.update(LOCKED, f"junk{i}", data=b"x", endpoints=[], ttl=TTL)
        assert await owner.list(LOCKED) == before


async def test_copied_requests_do_not_help(server: LiveServer) -> None:
    a = member()
    wire = Recorder()
    async with HttpDiscoveryClient(server.url, signer=a, transport=wire) as owner:
        await owner.update(LOCKED, a.node_id, data=b"v1", endpoints=[b"e"], ttl=TTL)
        put = wire.seen[-1]
        before = await owner.list(LOCKED)
        # Another body under the copied signature: the digest no longer matches.
        changed = await replay(server, put, content=put.content.replace(b"djE=", b"djI="))
        assert changed.status_code == 401
        assert changed.json()["error"]["message"] == "Content-Digest does not match the body"
        # The same signature on another record: the path is signed.
        other = str(put.url).replace(a.node_id, member().node_id)
        moved = await replay(server, put, url=other)
        assert moved.status_code in (401, 403)
        assert await owner.list(LOCKED) == before

        # A copied delete, replayed after the node published again, removes nothing.
        await owner.delete(LOCKED, a.node_id)
        delete = wire.seen[-1]
        await owner.update(LOCKED, a.node_id, data=b"v2", endpoints=[b"e"], ttl=TTL)
        replayed = await replay(server, delete)
        assert replayed.status_code == 403
        assert replayed.json() == {
            "error": {
                "code": "permission_denied",
                "message": "delete names a record that is not the current one (replayed?)",
            }
        }
        assert [x.data for x in await owner.list(LOCKED)] == [b"v2"]


async def test_requests_outside_the_clock_window_are_refused(server: LiveServer) -> None:
    import time

    late = member(clock=lambda: time.time() - 120)
    async with client(server, late) as http:
        with pytest.raises(ClientError, match=r"outside the 60 s clock window.*HTTP 401"):
            await http.update(LOCKED, late.node_id, data=b"x", endpoints=[], ttl=TTL)


async def test_open_cluster_talos_writers_and_bound_records(server: LiveServer) -> None:
    agent = stranger()  # open clusters need no endorsement: the id is the key
    async with client(server) as talos, client(server, agent) as ours:
        await talos.update(OPEN, "talosnode", data=b"t", endpoints=[b"e"], ttl=TTL)
        await talos.update(OPEN, "talosnode", data=b"t2", endpoints=[], ttl=TTL)
        await ours.update(OPEN, agent.node_id, data=b"ours", endpoints=[b"e"], ttl=TTL)
        with pytest.raises(ClientError, match=r"bound to a node key.*HTTP 401"):
            await talos.update(OPEN, agent.node_id, data=b"evil", endpoints=[], ttl=TTL)
        with pytest.raises(ClientError, match=r"bound to a node key.*HTTP 401"):
            await talos.delete(OPEN, agent.node_id)
        records = {x.id: x.data for x in await talos.list(OPEN)}
        assert records == {"talosnode": b"t2", agent.node_id: b"ours"}
        await talos.delete(OPEN, "talosnode")
        await ours.delete(OPEN, agent.node_id)
        assert await talos.list(OPEN) == []


async def test_evicted_nodes_are_cut_out_for_good(server: LiveServer) -> None:
    a, b = member(), member()
    async with client(server, a) as node_a, client(server, b) as node_b, client(server) as admin:
        await node_a.update(LOCKED, a.node_id, data=b"a", endpoints=[], ttl=TTL)
        await node_b.update(LOCKED, b.node_id, data=b"b", endpoints=[], ttl=TTL)
        node_key, signature = revocation(b)
        with pytest.raises(ClientError, match=r"not signed by the cluster key.*HTTP 401"):
            await admin.revoke(LOCKED, node_key, bytes(64))
        with pytest.raises(ClientError, match=r"only a locked cluster.*HTTP 403"):
            await admin.revoke(OPEN, node_key, signature)
        revision = await admin.revoke(LOCKED, node_key, signature)
        assert revision > 0
        assert await admin.revoke(LOCKED, node_key, signature) == revision  # idempotent
        assert [x.id for x in await admin.list(LOCKED)] == [a.node_id]
        assert await admin.revocations(LOCKED) == [node_key]
        with pytest.raises(ClientError, match=r"node key was revoked.*HTTP 403"):
            await node_b.update(LOCKED, b.node_id, data=b"back", endpoints=[], ttl=TTL)
        # A replacement machine: a fresh key, the same secret.
        c = member()
        async with client(server, c) as node_c:
            await node_c.update(LOCKED, c.node_id, data=b"c", endpoints=[], ttl=TTL)
        assert {x.id for x in await admin.list(LOCKED)} == {a.node_id, c.node_id}

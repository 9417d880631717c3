"""The agent tests' FakeDiscovery held to the same contract as the real clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from ipaddress import ip_address

import pytest

from discovery.client import ClientError, Deleted, DiscoveryClient, RawAffiliate, Snapshot, Updated
from discovery.core.ratelimit import RateLimiter
from membership.limits import Limits
from tests.discovery.client_contract import DiscoveryClientContract
from tests.discovery.client_harness import TTL, Options, Serve, Served
from tests.fakes import FakeDiscovery

CLIENT_IP = "203.0.113.7"


class TestFakeDiscoveryClient(DiscoveryClientContract):
    # It imitates our HTTP API, which the agent prefers.
    resumes = True
    revisions = True

    @pytest.fixture
    def serve(self) -> Serve:
        @contextlib.asynccontextmanager
        async def serve_(options: Options) -> AsyncIterator[Served]:
            fake = FakeDiscovery(
                client_ip=None if options.disable_client_ip else CLIENT_IP,
                redirect=options.redirect or None,
                limits=Limits(cluster_affiliates_max=options.cluster_affiliates_max),
                rate_limiter=RateLimiter(0.001, 1) if options.rate_limited else None,
            )

            async def stop() -> None:
                fake.down = True

            served = Served(ip_address(CLIENT_IP), fake.client, fake.stored, stop)
            try:
                yield served
            finally:
                await served.aclose()

        return serve_

    @pytest.fixture
    def unreachable(self) -> DiscoveryClient:
        fake = FakeDiscovery()
        fake.down = True
        return fake.client()


# -- what only the fake has: the hooks agent tests drive it with -----------------------------


@pytest.mark.anyio
async def test_put_and_remove_follow_the_same_rules_and_reach_watchers() -> None:
    fake = FakeDiscovery()
    client = fake.client()
    stream = client.watch("c")
    assert await anext(stream) == Snapshot(affiliates=(), revision=0)
    fake.put("c", RawAffiliate("a", b"d", (b"e1",)))
    # Empty data keeps the data, endpoints merge: as if node "a" had sent an update.
    fake.put("c", RawAffiliate("a", b"", (b"e2",)))
    fake.remove("c", "a")
    fake.remove("c", "a")
    assert [await anext(stream) for _ in range(3)] == [
        Updated(RawAffiliate("a", b"d", (b"e1",)), revision=1),
        Updated(RawAffiliate("a", b"d", (b"e1", b"e2")), revision=2),
        Deleted("a", revision=3),
    ]
    await stream.aclose()  # type: ignore[attr-defined]
    assert fake.revision == 3 and fake.stored("c") == (3, [])


@pytest.mark.anyio
async def test_records_what_the_agent_sent_and_comes_back_after_down() -> None:
    fake = FakeDiscovery()
    client = fake.client()
    await client.hello("c", "v1")
    await client.update("c", "a", data=None, endpoints=[b"e"], ttl=TTL)
    await client.delete("c", "a")
    fake.down = True
    with pytest.raises(ClientError, match="unreachable"):
        await client.list("c")
    fake.down = False
    assert await client.list("c") == []
    await anext(client.watch("c", since=7))
    assert fake.hellos == 1
    assert fake.updates == [("c", "a", None, (b"e",), TTL)]
    assert fake.deletes == [("c", "a")]
    assert fake.watch_since == [7]

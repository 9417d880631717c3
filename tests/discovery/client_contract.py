"""The contract every DiscoveryClient keeps; test_client_<kind>.py subclasses it.

A subclass serves a service (real, or the fake) through `serve` and declares what its
protocol can do. A capability a protocol lacks is asserted as the documented alternative
(a gRPC watch given `since` starts from a snapshot), never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from discovery.client import ClientError, Deleted, DiscoveryClient, RawAffiliate, Snapshot, Updated
from membership.limits import TTL_MAX
from tests.discovery.client_harness import (
    AFFILIATE,
    CLUSTER,
    TTL,
    Options,
    Serve,
    Served,
    take,
    unrevised,
    watching,
)


class DiscoveryClientContract:
    # watch(since=r) yields exactly the changes after r; otherwise it starts from a snapshot.
    resumes: ClassVar[bool]
    # Snapshots and changes carry the service's revision; otherwise None.
    revisions: ClassVar[bool]
    # How an error message names its status, by kind (invalid, exhausted, rate_limited).
    status_names: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture
    def serve(self) -> Serve:
        """Overridden: start a service with these options, stop it (and its clients) on exit."""
        raise NotImplementedError

    @pytest.fixture
    def unreachable(self) -> DiscoveryClient:
        """Overridden: a client of a service that does not answer at all."""
        raise NotImplementedError

    @pytest.fixture
    async def service(self, serve: Serve) -> AsyncIterator[Served]:
        async with serve(Options()) as served:
            yield served

    @pytest.fixture
    def client(self, service: Served) -> DiscoveryClient:
        return service.client()

    def names_status(self, error: ClientError, kind: str) -> None:
        if kind in self.status_names:
            assert self.status_names[kind] in str(error)

    # -- hello -------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_hello_reports_the_client_ip_and_no_redirect(
        self, service: Served, client: DiscoveryClient
    ) -> None:
        reply = await client.hello(CLUSTER, "v1.9.0")
        assert reply.client_ip == service.client_ip
        assert reply.redirect is None

    @pytest.mark.anyio
    async def test_hello_without_client_ip_reporting(self, serve: Serve) -> None:
        async with serve(Options(disable_client_ip=True)) as service:
            reply = await service.client().hello(CLUSTER, "v1.9.0")
        assert reply.client_ip is None

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "configured", ["https://elsewhere.example:3001", "elsewhere.example:3001"]
    )
    async def test_hello_returns_the_redirect_as_a_url(self, serve: Serve, configured: str) -> None:
        async with serve(Options(redirect=configured)) as service:
            client = service.client()
            reply = await client.hello(CLUSTER, "v1.9.0")
        # The Talos form names no protocol: it keeps the one this client speaks.
        scheme = client.endpoint.split("://", 1)[0]
        expected = configured if "://" in configured else f"{scheme}://{configured}"
        assert reply.redirect == expected

    # -- update, list, delete ----------------------------------------------------------------

    @pytest.mark.anyio
    async def test_update_list_delete_round_trip_ids_with_reserved_characters(
        self, service: Served, client: DiscoveryClient
    ) -> None:
        await client.update(CLUSTER, AFFILIATE, data=b"sealed", endpoints=[b"e1"], ttl=TTL)
        # Endpoints merge and data=None keeps the data.
        await client.update(CLUSTER, AFFILIATE, data=None, endpoints=[b"e2", b"e1"], ttl=TTL)
        await client.update(CLUSTER, "other", data=b"x", endpoints=[], ttl=TTL)
        listed = sorted(await client.list(CLUSTER), key=lambda a: a.id)
        assert listed == [
            RawAffiliate(id=AFFILIATE, data=b"sealed", endpoints=(b"e1", b"e2")),
            RawAffiliate(id="other", data=b"x", endpoints=()),
        ]
        # The service decoded the ids exactly: it holds the same strings.
        _, stored = service.stored(CLUSTER)
        assert {a.id for a in stored} == {AFFILIATE, "other"}

        await client.delete(CLUSTER, AFFILIATE)
        await client.delete(CLUSTER, AFFILIATE)  # idempotent
        assert [a.id for a in await client.list(CLUSTER)] == ["other"]
        assert await client.list("an empty cluster") == []

    @pytest.mark.anyio
    async def test_data_replaces(self, client: DiscoveryClient) -> None:
        await client.update(CLUSTER, AFFILIATE, data=b"old", endpoints=[b"e1"], ttl=TTL)
        await client.update(CLUSTER, AFFILIATE, data=b"new", endpoints=[], ttl=TTL)
        assert await client.list(CLUSTER) == [RawAffiliate(AFFILIATE, b"new", (b"e1",))]

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "ttl", [timedelta(seconds=90), timedelta(seconds=90, milliseconds=500)]
    )
    async def test_ttl_reaches_the_service(
        self, service: Served, client: DiscoveryClient, ttl: timedelta
    ) -> None:
        await client.update(CLUSTER, AFFILIATE, data=b"d", endpoints=[], ttl=ttl)
        _, [affiliate] = service.stored(CLUSTER)
        remaining = affiliate.expires_at - datetime.now(UTC)
        assert timedelta(seconds=85) < remaining <= ttl

    # -- watch -------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_watch_snapshot_then_updates_and_deletes_by_other_writers(
        self, service: Served, client: DiscoveryClient
    ) -> None:
        writer = service.client()
        await writer.update(CLUSTER, "before", data=b"b", endpoints=[b"e"], ttl=TTL)
        async with watching(client) as stream:
            [snapshot] = await take(stream)
            head, _ = service.stored(CLUSTER)
            await writer.update(CLUSTER, AFFILIATE, data=b"one", endpoints=[b"e1"], ttl=TTL)
            await writer.update("another cluster", "x", data=b"x", endpoints=[], ttl=TTL)
            await writer.update(CLUSTER, AFFILIATE, data=None, endpoints=[b"e2"], ttl=TTL)
            await writer.delete(CLUSTER, "before")
            events = await take(stream, 3)

        assert isinstance(snapshot, Snapshot)
        assert snapshot.affiliates == (RawAffiliate("before", b"b", (b"e",)),)
        assert [unrevised(e) for e in events] == [
            Updated(RawAffiliate(AFFILIATE, b"one", (b"e1",)), revision=None),
            # Each update carries the whole affiliate: data plus every endpoint.
            Updated(RawAffiliate(AFFILIATE, b"one", (b"e1", b"e2")), revision=None),
            Deleted("before", revision=None),
        ]
        revisions = [snapshot.revision, *(e.revision for e in events)]
        if not self.revisions:
            assert revisions == [None] * 4
            return
        assert snapshot.revision == head
        assert all(r is not None and r > 0 for r in revisions)
        assert all((a or 0) < (b or 0) for a, b in itertools.pairwise(revisions))

    @pytest.mark.anyio
    async def test_an_empty_cluster_still_starts_with_a_snapshot(
        self, client: DiscoveryClient
    ) -> None:
        async with watching(client) as stream:
            [first] = await take(stream)
        assert isinstance(first, Snapshot) and first.affiliates == ()
        assert (first.revision is not None) == self.revisions

    @pytest.mark.anyio
    async def test_watch_with_since_resumes_or_starts_from_a_snapshot(
        self, service: Served, client: DiscoveryClient
    ) -> None:
        writer = service.client()
        async with watching(client) as stream:
            await take(stream)
            await writer.update(CLUSTER, "a", data=b"v1", endpoints=[], ttl=TTL)
            [seen] = await take(stream)
        assert isinstance(seen, Updated)
        # A protocol without revisions is handed one anyway: it must not matter.
        since = seen.revision if self.revisions else 1
        assert since is not None

        # While disconnected: two changes and a deletion here, a write elsewhere.
        await writer.update(CLUSTER, "b", data=b"b", endpoints=[], ttl=TTL)
        await writer.update(CLUSTER, "a", data=b"v2", endpoints=[], ttl=TTL)
        await writer.update("elsewhere", "z", data=b"z", endpoints=[], ttl=TTL)
        await writer.delete(CLUSTER, "b")

        async with watching(client, since=since) as stream:
            missed = await take(stream, 3 if self.resumes else 1)
            await writer.update(CLUSTER, "live", data=b"l", endpoints=[], ttl=TTL)
            [after] = await take(stream)

        assert isinstance(after, Updated) and after.affiliate.id == "live"
        if not self.resumes:
            assert [unrevised(e) for e in missed] == [
                Snapshot(affiliates=(RawAffiliate("a", b"v2", ()),), revision=None)
            ]
            return
        assert [type(e).__name__ for e in missed] == ["Updated", "Updated", "Deleted"]
        assert [e.affiliate.id for e in missed if isinstance(e, Updated)] == ["b", "a"]
        revisions = [e.revision or 0 for e in missed]
        assert since < revisions[0] < revisions[1] < revisions[2]

    @pytest.mark.anyio
    async def test_watch_raises_retryable_when_the_service_stops(
        self, service: Served, client: DiscoveryClient
    ) -> None:
        async with watching(client) as stream:
            await take(stream)
            stopping = asyncio.create_task(service.stop())
            with pytest.raises(ClientError) as caught:
                await take(stream)
            await stopping
        assert caught.value.retryable

    @pytest.mark.anyio
    async def test_watch_of_an_invalid_cluster_fails_on_first_next_not_retryable(
        self, client: DiscoveryClient
    ) -> None:
        stream = client.watch("c" * 300)
        with pytest.raises(ClientError, match="cluster ID is too long") as caught:
            await anext(stream)
        assert not caught.value.retryable

    @pytest.mark.anyio
    async def test_writes_that_change_nothing_visible_reach_no_watcher(
        self, service: Served, client: DiscoveryClient
    ) -> None:
        writer = service.client()
        await writer.update(CLUSTER, "a", data=b"a", endpoints=[b"e"], ttl=TTL)
        async with watching(client) as stream:
            await take(stream)
            # A refresh moves only expiries; deleting what is absent deletes nothing.
            await writer.update(CLUSTER, "a", data=b"a", endpoints=[b"e"], ttl=TTL * 2)
            await writer.update(CLUSTER, "a", data=None, endpoints=[], ttl=TTL)
            await writer.delete(CLUSTER, "never there")
            await writer.update(CLUSTER, "b", data=b"b", endpoints=[], ttl=TTL)
            [next_event] = await take(stream)
        assert unrevised(next_event) == Updated(RawAffiliate("b", b"b", ()), revision=None)

    # -- errors ------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_every_call_refuses_an_invalid_cluster_not_retryable(
        self, client: DiscoveryClient
    ) -> None:
        cluster = "c" * 300
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.hello(cluster, "v1"),
            lambda: client.update(cluster, "a", data=b"d", endpoints=[], ttl=TTL),
            lambda: client.delete(cluster, "a"),
            lambda: client.list(cluster),
        ]
        for call in calls:
            with pytest.raises(ClientError, match="cluster ID is too long") as caught:
                await call()
            assert not caught.value.retryable

    @pytest.mark.anyio
    async def test_a_ttl_over_the_maximum_is_refused_not_retryable(
        self, client: DiscoveryClient
    ) -> None:
        with pytest.raises(ClientError, match="ttl is too large") as caught:
            await client.update(CLUSTER, AFFILIATE, data=b"d", endpoints=[], ttl=TTL_MAX * 2)
        assert not caught.value.retryable
        assert await client.list(CLUSTER) == []

    @pytest.mark.anyio
    async def test_too_big_data_is_refused_with_the_servers_message(
        self, client: DiscoveryClient
    ) -> None:
        with pytest.raises(ClientError, match="affiliate data is too big") as caught:
            await client.update(CLUSTER, AFFILIATE, data=b"x" * 4096, endpoints=[], ttl=TTL)
        assert not caught.value.retryable
        self.names_status(caught.value, "invalid")

    @pytest.mark.anyio
    async def test_capacity_limits_are_not_retryable(self, serve: Serve) -> None:
        async with serve(Options(cluster_affiliates_max=1)) as service:
            client = service.client()
            await client.update(CLUSTER, "a", data=b"a", endpoints=[], ttl=TTL)
            with pytest.raises(ClientError, match="too many affiliates") as caught:
                await client.update(CLUSTER, "b", data=b"b", endpoints=[], ttl=TTL)
        assert not caught.value.retryable
        self.names_status(caught.value, "exhausted")

    @pytest.mark.anyio
    async def test_rate_limited_calls_are_retryable(self, serve: Serve) -> None:
        async with serve(Options(rate_limited=True)) as service:
            client = service.client()
            await client.list(CLUSTER)
            with pytest.raises(ClientError, match="rate limit") as caught:
                await client.list(CLUSTER)
        assert caught.value.retryable
        self.names_status(caught.value, "rate_limited")

    @pytest.mark.anyio
    async def test_an_unreachable_service_is_retryable(self, unreachable: DiscoveryClient) -> None:
        async with contextlib.aclosing(unreachable) as client:
            with pytest.raises(ClientError) as hello:
                await client.hello(CLUSTER, "v1")
            with pytest.raises(ClientError) as watch:
                await anext(client.watch(CLUSTER))
        assert hello.value.retryable and watch.value.retryable

    @pytest.mark.anyio
    async def test_calls_after_aclose_fail_not_retryable(
        self, client: DiscoveryClient, unreachable: DiscoveryClient
    ) -> None:
        await client.hello(CLUSTER, "v1")
        # Once used, and never connected at all: both are closed for good.
        for closed in (client, unreachable):
            await closed.aclose()
            await closed.aclose()  # idempotent
            with pytest.raises(ClientError, match="closed") as listing:
                await closed.list(CLUSTER)
            with pytest.raises(ClientError, match="closed") as watched:
                await anext(closed.watch(CLUSTER))
            assert not listing.value.retryable and not watched.value.retryable

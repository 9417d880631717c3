"""FakeDiscovery: an in-memory discovery service for agent tests, deciding changes with the
same pure commands as the real service (its contract is tests/discovery/client_contract.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from discovery.client import (
    ClientError,
    Deleted,
    HelloReply,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
)
from discovery.core import validate
from discovery.core.changes import Change, change_of
from discovery.core.errors import ServiceError
from discovery.core.ratelimit import RateLimiter
from membership.commands import delete_affiliate, update_affiliate
from membership.errors import DomainError
from membership.events import Event
from membership.limits import DEFAULT_LIMITS, TTL_MAX, Limits
from membership.model import Affiliate, ClusterView, UpdateRequest
from membership.registry import fold

# -- kubespan: discovery (discovery/client/) --------------------------------------------


@dataclass
class FakeDiscovery:
    """An in-memory discovery service for agent tests; `client()` is a DiscoveryClient.

    It has no rules of its own: membership.commands decide, the registry folds, and the
    core's own functions check input and pick what watchers see, so the contract suite
    (tests/discovery/test_client_fake.py) holds it to what the real clients do. A watch
    resumes after a revision, as over HTTP. `down = True` makes every call fail and breaks
    open watches, like a stopped service.
    """

    url: str = "http://discovery.test:3001"
    client_ip: str | None = "203.0.113.7"
    redirect: str | None = None
    limits: Limits = DEFAULT_LIMITS
    rate_limiter: RateLimiter | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    views: dict[str, ClusterView] = field(default_factory=dict)
    revision: int = 0
    updates: list[tuple[str, str, bytes | None, tuple[bytes, ...], timedelta]] = field(
        default_factory=list
    )
    deletes: list[tuple[str, str]] = field(default_factory=list)
    hellos: int = 0
    watch_since: list[int | None] = field(default_factory=list)
    _down: bool = False
    # Every visible change in revision order, so a watch can resume after any of them.
    _changes: list[tuple[str, Change]] = field(default_factory=list)
    _watchers: dict[str, list[asyncio.Queue[WatchEvent | Exception]]] = field(default_factory=dict)

    def client(self) -> FakeDiscoveryClient:
        return FakeDiscoveryClient(self)

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        for queue in [q for queues in self._watchers.values() for q in queues if value]:
            queue.put_nowait(ClientError("connection reset", retryable=True))

    def admit(self, cluster_id: str) -> None:
        """What every call meets first: a running service, the rate limit, a valid cluster."""
        if self._down:
            raise ClientError("discovery service unreachable: connection refused", retryable=True)
        if self.rate_limiter is not None and self.rate_limiter.acquire(
            self.client_ip, time.monotonic()
        ):
            raise ClientError("rate limit exceeded", retryable=True)
        with _refused():
            validate.cluster_id(cluster_id, self.limits)

    def put(self, cluster: str, affiliate: RawAffiliate, ttl: timedelta = TTL_MAX) -> None:
        """Store an affiliate as an update from some node would (data replaces, endpoints merge)."""
        with _refused():
            request = UpdateRequest(
                affiliate_id=validate.affiliate_id(affiliate.id, self.limits),
                data=validate.affiliate_data(affiliate.data, self.limits),
                endpoints=validate.endpoints(affiliate.endpoints, self.limits),
                ttl=ttl,
            )
            self._decide(
                cluster, update_affiliate(self._view(cluster), request, self.clock(), self.limits)
            )

    def remove(self, cluster: str, affiliate_id: str) -> None:
        with _refused():
            validate.affiliate_id(affiliate_id, self.limits)
            self._decide(cluster, delete_affiliate(self._view(cluster), affiliate_id))

    def stored(self, cluster: str) -> tuple[int, list[Affiliate]]:
        """(revision, the cluster's affiliates as the service holds them), like the core's list."""
        return self.revision, list(self._view(cluster).affiliates.values())

    def subscribe(
        self, cluster: str, since: int | None
    ) -> tuple[list[WatchEvent], asyncio.Queue[WatchEvent | Exception]]:
        """The first events of a watch and the queue of later ones, taken in one step."""
        queue: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue()
        self._watchers.setdefault(cluster, []).append(queue)
        if since is not None and since <= self.revision:
            missed = [c for stream, c in self._changes if stream == cluster and c.revision > since]
            return [_watch_event(c) for c in missed], queue
        affiliates = tuple(_raw(a) for a in self._view(cluster).affiliates.values())
        return [Snapshot(affiliates, self.revision)], queue

    def unsubscribe(self, cluster: str, queue: asyncio.Queue[WatchEvent | Exception]) -> None:
        self._watchers[cluster].remove(queue)

    def _view(self, cluster: str) -> ClusterView:
        return self.views.get(cluster) or ClusterView(cluster)

    def _decide(self, cluster: str, events: list[Event]) -> None:
        for event in events:
            self.revision += 1
            fold(self.views, cluster, event, self.revision)
            change = change_of(self.revision, event)
            if change is not None:
                self._changes.append((cluster, change))
                for queue in self._watchers.get(cluster, []):
                    queue.put_nowait(_watch_event(change))


def _raw(affiliate: Affiliate) -> RawAffiliate:
    return RawAffiliate(affiliate.id, affiliate.data, affiliate.endpoint_blobs())


def _watch_event(change: Change) -> WatchEvent:
    if change.affiliate is None:
        return Deleted(change.affiliate_id, change.revision)
    return Updated(_raw(change.affiliate), change.revision)


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    # The core's refusals (bad input, TTL, capacity) as a client sees them: not retryable.
    try:
        yield
    except (ServiceError, DomainError) as exc:
        raise ClientError(str(exc), retryable=False) from exc


class FakeDiscoveryClient:
    def __init__(self, service: FakeDiscovery) -> None:
        self.service = service
        self.endpoint = service.url
        self.closed = False

    def _admit(self, cluster_id: str) -> None:
        if self.closed:
            raise ClientError("client is closed", retryable=False)
        self.service.admit(cluster_id)

    async def hello(self, cluster_id: str, client_version: str) -> HelloReply:
        self._admit(cluster_id)
        self.service.hellos += 1
        ip = ip_address(self.service.client_ip) if self.service.client_ip else None
        redirect = self.service.redirect
        # As both real clients do: a bare "host:port" (the Talos form) keeps our scheme.
        if redirect and "://" not in redirect:
            redirect = f"{self.endpoint.split('://', 1)[0]}://{redirect}"
        return HelloReply(client_ip=ip, redirect=redirect or None)

    async def update(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> None:
        self._admit(cluster_id)
        self.service.updates.append((cluster_id, affiliate_id, data, tuple(endpoints), ttl))
        self.service.put(cluster_id, RawAffiliate(affiliate_id, data or b"", tuple(endpoints)), ttl)

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        self._admit(cluster_id)
        self.service.deletes.append((cluster_id, affiliate_id))
        self.service.remove(cluster_id, affiliate_id)

    async def list(self, cluster_id: str) -> list[RawAffiliate]:
        self._admit(cluster_id)
        return [_raw(a) for a in self.service.stored(cluster_id)[1]]

    async def watch(
        self, cluster_id: str, *, since: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        self._admit(cluster_id)
        self.service.watch_since.append(since)
        first, queue = self.service.subscribe(cluster_id, since)
        try:
            for event in first:
                yield event
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.service.unsubscribe(cluster_id, queue)

    async def aclose(self) -> None:
        self.closed = True

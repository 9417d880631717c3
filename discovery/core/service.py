"""The application core shared by the HTTP and gRPC front ends.

Data flow of a write: validate -> decide events against the projection -> append to the log
(durable) -> the tail folds them into the projection -> the hub fans them out -> the call
returns the revision. Events appended by other replicas take the same tail path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address

from discovery.core import validate
from discovery.core.changes import Change, WatchMessage, change_of
from discovery.core.clock import Clock, system_clock
from discovery.core.errors import InvalidArgument, NotReady, RateLimited, ResourceExhausted
from discovery.core.hub import WatchHub
from discovery.core.metrics import Metrics, parse_client_version
from discovery.core.projection import Projection
from discovery.core.ratelimit import RateLimiter
from membership import commands
from membership.codec import decode_event, encode_event, event_type
from membership.errors import DomainError, TTLTooLarge
from membership.events import Event
from membership.limits import DEFAULT_LIMITS, Limits
from membership.model import Affiliate, UpdateRequest
from membership.snapshot import decode_snapshot
from storage.base import EventLog, NewEvent, StoredEvent
from storage.errors import Conflict, StorageError

log = logging.getLogger("discovery")

_READ_BATCH = 2000
_CONFLICT_RETRIES = 8
_APPLY_TIMEOUT = 30.0

# A command's decision, run under the cluster's lock against the current projection.
Decide = Callable[[], list[Event]]


@dataclass(frozen=True, slots=True)
class HelloResult:
    client_ip: IPv4Address | IPv6Address | None
    redirect: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    revision: int
    type: str
    recorded_at: float
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreOptions:
    limits: Limits = DEFAULT_LIMITS
    watch_buffer: int = 256
    rate_limit: float = 15.0
    rate_burst: int = 60
    redirect_endpoint: str = ""
    disable_client_ip: bool = False


class DiscoveryService:
    def __init__(
        self,
        event_log: EventLog,
        options: CoreOptions | None = None,
        *,
        clock: Clock = system_clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.log = event_log
        self.options = options or CoreOptions()
        self.limits = self.options.limits
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.projection = Projection()
        self.hub = WatchHub(self.projection, self.options.watch_buffer)
        self.limiter = RateLimiter(self.options.rate_limit, self.options.rate_burst)
        self.loaded = False
        self.storage_ok = True
        # Whether this replica runs GC and snapshots (set by the maintenance loop).
        self.leader = False
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tail_task: asyncio.Task[None] | None = None
        self.metrics.watch_state(self._state_gauges)

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the projection: the newest snapshot, then every event after it."""
        started = time.monotonic()
        snapshot = await self.log.load_snapshot()
        if snapshot is not None:
            views = await asyncio.to_thread(decode_snapshot, snapshot.blob)
            self.projection = Projection(views, snapshot.revision)
            self.hub = WatchHub(self.projection, self.options.watch_buffer)
        while batch := await self.log.read(self.projection.head, _READ_BATCH):
            self.projection.apply(batch)
        self.loaded = True
        clusters, affiliates, _ = self.projection.counts()
        log.info(
            "state loaded",
            extra={
                "revision": self.projection.head,
                "clusters": clusters,
                "affiliates": affiliates,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def start_tail(self) -> None:
        self._tail_task = asyncio.create_task(self._tail(), name="log-tail")

    async def stop_tail(self) -> None:
        if self._tail_task is not None:
            self._tail_task.cancel()
            await asyncio.gather(self._tail_task, return_exceptions=True)
            self._tail_task = None

    async def _tail(self) -> None:
        backoff = 0.1
        while True:
            try:
                batch = await self.log.read(self.projection.head, _READ_BATCH)
                if batch:
                    self.projection.apply(batch)
                else:
                    await self.log.wait_for(self.projection.head, timeout=5.0)
                self.storage_ok, backoff = True, 0.1
            except StorageError as exc:
                if self.storage_ok:
                    log.warning("event log unavailable", extra={"error": str(exc)})
                self.storage_ok = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug or a damaged event must not silently stop the projection: report
                # not-ready (so load balancers drain this replica) and keep retrying.
                log.exception("log tail failed")
                self.storage_ok = False
                await asyncio.sleep(5.0)

    @property
    def ready(self) -> bool:
        return self.loaded and self.storage_ok

    def _check_ready(self) -> None:
        if not self.ready:
            raise NotReady("the event log is unavailable, try again later")

    # -- requests --------------------------------------------------------------------------

    def check_rate(self, client_ip: object | None) -> None:
        """Take a token for `client_ip`; raises RateLimited. Clients without an IP pass."""
        if client_ip is None:
            return
        wait = self.limiter.acquire(client_ip, time.monotonic())
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise RateLimited("rate limit exceeded", retry_after=wait)

    def hello(
        self, cluster_id: str, client_version: str, client_ip: IPv4Address | IPv6Address | None
    ) -> HelloResult:
        self.metrics.hello.labels(parse_client_version(client_version)).inc()
        validate.cluster_id(cluster_id, self.limits)
        return HelloResult(
            client_ip=None if self.options.disable_client_ip else client_ip,
            redirect=self.options.redirect_endpoint,
        )

    async def update_affiliate(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> int:
        """Create or update an affiliate durably; returns the revision the change is visible at."""
        # Same order as upstream's validate.go, so a request with several bad fields gets
        # the same message from both front ends and from the Talos service.
        validate.cluster_id(cluster_id, self.limits)
        request = UpdateRequest(
            affiliate_id=validate.affiliate_id(affiliate_id, self.limits),
            data=validate.affiliate_data(data, self.limits),
            endpoints=validate.endpoints(endpoints, self.limits),
            ttl=ttl,
        )
        return await self._decide_and_append(
            cluster_id,
            lambda: commands.update_affiliate(
                self.projection.view(cluster_id), request, self.clock(), self.limits
            ),
        )

    async def delete_affiliate(self, cluster_id: str, affiliate_id: str) -> int:
        """Delete an affiliate (idempotent); returns the revision the deletion is visible at."""
        validate.cluster_id(cluster_id, self.limits)
        validate.affiliate_id(affiliate_id, self.limits)
        return await self._decide_and_append(
            cluster_id,
            lambda: commands.delete_affiliate(self.projection.view(cluster_id), affiliate_id),
        )

    async def _decide_and_append(self, stream: str, decide: Decide) -> int:
        self._check_ready()
        lock = self._locks.get(stream)
        if lock is None:
            lock = self._locks[stream] = asyncio.Lock()
        async with lock:
            for _ in range(_CONFLICT_RETRIES):
                base = self.projection.head
                try:
                    events = decide()
                except TTLTooLarge as exc:
                    raise InvalidArgument(str(exc)) from exc
                except DomainError as exc:
                    raise ResourceExhausted(str(exc)) from exc
                if not events:
                    return base
                try:
                    return await self.append(stream, events, base_revision=base)
                except Conflict:
                    # Another replica changed this cluster: catch up and decide again.
                    await self._catch_up()
            raise NotReady("too much contention on this cluster, try again")

    async def append(
        self, stream: str, events: Sequence[Event], *, base_revision: int | None
    ) -> int:
        """Append durably and wait until the projection includes it (read-your-writes)."""
        records = [NewEvent(event_type(e), encode_event(e)) for e in events]
        started = time.perf_counter()
        try:
            revision = await self.log.append(stream, records, base_revision=base_revision)
        except Conflict:
            raise
        except StorageError as exc:
            self.storage_ok = False
            raise NotReady("the event log is unavailable, try again later") from exc
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        self.projection.expect(revision, events)
        try:
            await asyncio.wait_for(self.projection.wait_applied(revision), _APPLY_TIMEOUT)
        except TimeoutError as exc:
            raise NotReady("the write is durable but not yet visible") from exc
        return revision

    async def _catch_up(self) -> None:
        try:
            head = await self.log.head()
        except StorageError as exc:
            raise NotReady("the event log is unavailable, try again later") from exc
        await asyncio.wait_for(self.projection.wait_applied(head), _APPLY_TIMEOUT)

    def list_affiliates(self, cluster_id: str) -> tuple[int, list[Affiliate]]:
        """(revision, live affiliates of the cluster)."""
        validate.cluster_id(cluster_id, self.limits)
        self._check_ready()
        view = self.projection.views.get(cluster_id)
        return self.projection.head, list(view.affiliates.values()) if view else []

    async def history(
        self, cluster_id: str, after: int, limit: int
    ) -> tuple[int, list[HistoryEntry]]:
        """(horizon, the cluster's events after `after`); events <= horizon may be gone."""
        validate.cluster_id(cluster_id, self.limits)
        self._check_ready()
        try:
            horizon = await self.log.horizon()
            records = await self.log.read(after, limit, stream=cluster_id)
        except StorageError as exc:
            raise NotReady("the event log is unavailable, try again later") from exc
        return horizon, [
            HistoryEntry(
                r.revision, r.type, r.recorded_at.timestamp(), decode_event(r.type, r.data)
            )
            for r in records
        ]

    # -- watch -----------------------------------------------------------------------------

    async def watch(
        self, cluster_id: str, *, since: int | None = None, idle: float | None = None
    ) -> AsyncGenerator[WatchMessage | None, None]:
        """A snapshot (or, with `since`, exactly the changes after it), then live changes.

        Yields None after `idle` seconds without a change, so callers can send keep-alives.
        """
        validate.cluster_id(cluster_id, self.limits)
        self._check_ready()
        sub, snapshot = self.hub.subscribe(cluster_id)
        try:
            if since is not None and await self._replayable(since, snapshot.revision):
                last = since
                async for change in self._replay(cluster_id, last, snapshot.revision):
                    yield change
            else:
                yield snapshot
            last = snapshot.revision
            while True:
                if not await sub.wait(idle):
                    yield None
                    continue
                if sub.closed:
                    return
                if sub.lagging:
                    self.metrics.watch_catchups.inc()
                    snapshot = self.hub.resume_live(sub)
                    if await self._replayable(last, snapshot.revision):
                        async for change in self._replay(cluster_id, last, snapshot.revision):
                            yield change
                    else:
                        yield snapshot
                    last = snapshot.revision
                    continue
                change = sub.queue.popleft()
                if change.revision > last:
                    last = change.revision
                    yield change
        finally:
            self.hub.unsubscribe(sub)

    async def _replayable(self, since: int, upto: int) -> bool:
        if since > upto:
            return False  # a revision from another log (or the future): resync
        try:
            return since >= await self.log.horizon()
        except StorageError:
            return False

    async def _replay(self, cluster_id: str, after: int, upto: int) -> AsyncIterator[Change]:
        while after < upto:
            try:
                batch: list[StoredEvent] = await self.log.read(after, 500, stream=cluster_id)
            except StorageError as exc:
                raise NotReady("the event log is unavailable, try again later") from exc
            if not batch:
                return
            for record in batch:
                if record.revision > upto:
                    return
                after = record.revision
                change = change_of(record.revision, decode_event(record.type, record.data))
                if change is not None:
                    yield change

    def _state_gauges(self) -> dict[str, float]:
        clusters, affiliates, endpoints = self.projection.counts()
        return {
            "discovery_state_clusters": clusters,
            "discovery_state_affiliates": affiliates,
            "discovery_state_endpoints": endpoints,
            "discovery_state_subscriptions": self.hub.watchers(),
            "discovery_log_head": self.projection.head,
        }

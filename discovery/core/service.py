"""The application core shared by the HTTP and gRPC front ends. A write: admit -> validate ->
decide events against the projection -> append to the log (durable) -> the tail folds them into
the projection -> the hub fans them out -> the call returns the revision. Events appended by
other workers or replicas take the same tail path."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address

from discovery.core import authz, past, validate
from discovery.core.admission import Admission, client_key
from discovery.core.changes import WatchMessage
from discovery.core.clock import Clock, Monotonic, system_clock
from discovery.core.errors import InvalidArgument, NotReady, ResourceExhausted, storage_unavailable
from discovery.core.health import StorageHealth
from discovery.core.holdings import Holdings
from discovery.core.hub import WatchHub
from discovery.core.metrics import Metrics
from discovery.core.projection import Projection, load_projection
from discovery.core.revocations import Revocations
from discovery.core.values import CoreOptions, CoreStatus, HelloResult, HistoryEntry
from discovery.core.watching import watch_cluster
from membership import commands
from membership.codec import encode_event, event_type
from membership.errors import DomainError, TTLTooLarge
from membership.events import Event
from membership.model import Affiliate, ClusterView, UpdateRequest
from membership.signatures import SignedRequest
from storage.base import EventLog, NewEvent
from storage.errors import Conflict, Rejected, StorageError

log = logging.getLogger("discovery")

_READ_BATCH = 2000
# Workers writing one cluster race between deciding and committing: at 4,000 writes/s over 100
# clusters, 1 write in 1,500 lost 8 races in a row (then a 503); each retry catches up first.
_CONFLICT_RETRIES = 32
_APPLY_TIMEOUT = 30.0
# Bounds a TTL before it becomes a timedelta (which overflows near 2.7e12 s); anything this
# large fails validation as "ttl is too large" anyway.
_TTL_CLAMP_SECONDS = 10.0**9

# A command's decision, run under the cluster's lock against the current projection.
Decide = Callable[[], list[Event]]
IPAddress = IPv4Address | IPv6Address


class DiscoveryService(Revocations):
    """Clusters' affiliates, kept by folding the event log; every request enters here."""

    def __init__(
        self,
        event_log: EventLog,
        options: CoreOptions | None = None,
        *,
        metrics: Metrics,
        leading: Callable[[], bool] = lambda: False,
        clock: Clock = system_clock,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._log = event_log
        self._options = options or CoreOptions()
        self._limits = self._options.limits
        self._clock = clock
        self._monotonic = monotonic
        self._metrics = metrics
        self._leading = leading
        self._projection = Projection()
        self._hub = WatchHub(self._projection, self._options.watch_buffer)
        self._admission = Admission(self._options, metrics, monotonic)
        self._holdings = Holdings(
            self._options.affiliates_per_client, self._options.clusters_per_client
        )
        self._projection.add_listener(self._holdings.on_change)
        self._loaded = False
        self._health = StorageHealth(monotonic)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        metrics.watch_status(self.status)

    async def load(self) -> None:
        """Rebuild the projection: the newest snapshot, then every event after it."""
        started = time.monotonic()
        self._projection = await load_projection(self._log)
        self._projection.add_listener(self._holdings.on_change)
        self._hub = WatchHub(self._projection, self._options.watch_buffer)
        self._loaded = True
        status = self.status()
        seconds = round(time.monotonic() - started, 3)
        log.info(
            "state loaded",
            extra={
                "revision": status.revision,
                "affiliates": status.affiliates,
                "seconds": seconds,
            },
        )

    async def run_tail(self) -> None:
        """Fold every event committed to the log, by anyone, into the projection. Runs until
        cancelled; storage outages mark the core not ready until the log answers again."""
        backoff = 0.1
        while True:
            try:
                batch = await self._log.read(self._projection.head, _READ_BATCH)
                self._projection.apply(batch)
                if len(batch) < _READ_BATCH:
                    # Caught up as far as the log knows: waiting first saves an empty read.
                    await self._log.wait_for(self._projection.head, timeout=5.0)
                self._health.read_succeeded()
                backoff = 0.1
            except StorageError as exc:
                self._health.read_failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug or a damaged event must not silently stop the projection: report
                # not-ready (so load balancers drain this replica) and keep retrying.
                log.exception("log tail failed")
                self._health.read_failed("the log tail failed")
                await asyncio.sleep(5.0)

    def close_watches(self) -> None:
        """End every watch stream now (shutdown); clients resume from their last revision."""
        self._hub.close_all()

    def forget_idle_clients(self) -> int:
        """Drop the rate-limit state of clients that went quiet; returns how many."""
        return self._admission.forget_idle_clients()

    def status(self) -> CoreStatus:
        clusters, affiliates, endpoints = self._projection.counts()
        return CoreStatus(
            loaded=self._loaded,
            storage_ok=self._health.reads_ok and self._health.writes_ok,
            storage_reason=self._health.reason,
            leader=self._leading(),
            revision=self._projection.head,
            clusters=clusters,
            affiliates=affiliates,
            endpoints=endpoints,
            watchers=self._hub.watchers(),
        )

    def _check_ready(self) -> None:
        # Reads need only a readable log: they keep serving while writes fail.
        if not (self._loaded and self._health.reads_ok):
            raise NotReady("the event log is unavailable, try again later")

    @property
    def health(self) -> StorageHealth:
        """Where maintenance reports the outcome of its own writes (the liveness mark)."""
        return self._health

    async def admit(self, client_ip: IPAddress | None, *, wait_up_to: float | None = 0.0) -> None:
        """Take a rate-limit token for `client_ip` (see Admission.admit); raises RateLimited."""
        await self._admission.admit(client_ip, wait_up_to=wait_up_to)

    def hello(
        self, cluster_id: str, client_version: str, client_ip: IPAddress | None
    ) -> HelloResult:
        self._metrics.count_hello(client_version)
        validate.cluster_id(cluster_id, self._limits)
        return HelloResult(
            client_ip=None if self._options.disable_client_ip else client_ip,
            redirect=self._options.redirect_endpoint,
        )

    async def update_affiliate(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl_seconds: float,
        client_ip: IPAddress | None = None,
        proof: SignedRequest | None = None,
    ) -> int:
        """Create or update an affiliate durably; returns the revision the change is visible at.
        A new affiliate counts against its creator's holdings (`client_ip`)."""
        # Upstream validate.go's order: several bad fields give the same message everywhere.
        validate.cluster_id(cluster_id, self._limits)
        clamped = max(-_TTL_CLAMP_SECONDS, min(ttl_seconds, _TTL_CLAMP_SECONDS))
        request = UpdateRequest(
            affiliate_id=validate.affiliate_id(affiliate_id, self._limits),
            data=validate.affiliate_data(data, self._limits),
            endpoints=validate.endpoints(endpoints, self._limits),
            ttl=timedelta(seconds=clamped),
        )
        grant = authz.authorize(cluster_id, affiliate_id, proof, self._clock(), deleting=False)
        client = client_key(client_ip) if client_ip is not None else None
        new = False

        def decide() -> list[Event]:
            nonlocal new
            view = grant.check(self._projection.view(cluster_id))
            if new := request.affiliate_id not in view.affiliates:
                self._holdings.check(client, cluster_id)
            return commands.update_affiliate(view, request, self._clock(), self._limits)

        revision = await self._decide_and_append(cluster_id, decide)
        if new:
            self._holdings.created(client, cluster_id, request.affiliate_id)
        return revision

    async def delete_affiliate(
        self, cluster_id: str, affiliate_id: str, proof: SignedRequest | None = None
    ) -> int:
        """Delete an affiliate (idempotent); returns the revision the deletion is visible at."""
        validate.cluster_id(cluster_id, self._limits)
        validate.affiliate_id(affiliate_id, self._limits)
        grant = authz.authorize(cluster_id, affiliate_id, proof, self._clock(), deleting=True)
        return await self._decide_and_append(
            cluster_id,
            lambda: commands.delete_affiliate(
                grant.check(self._projection.view(cluster_id)), affiliate_id
            ),
        )

    async def _decide_and_append(self, stream: str, decide: Decide) -> int:
        self._check_ready()
        lock = self._locks.get(stream)
        if lock is None:
            lock = self._locks[stream] = asyncio.Lock()
        async with lock:
            for _ in range(_CONFLICT_RETRIES):
                base = self._projection.head
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
                    await self.catch_up()
            raise NotReady("too much contention on this cluster, try again")

    async def append(
        self, stream: str, events: Sequence[Event], *, base_revision: int | None
    ) -> int:
        """Append durably and wait until the projection includes it (read-your-writes).

        Raises Conflict when `stream` moved past `base_revision`, NotReady on an outage."""
        records = [NewEvent(event_type(e), encode_event(e)) for e in events]
        started = time.perf_counter()
        try:
            revision = await self._log.append(stream, records, base_revision=base_revision)
        except Conflict:
            raise
        except Rejected as exc:
            # This append alone was refused (its neighbours were committed): the caller's
            # fault, and no sign of an outage.
            log.warning("append refused by storage", extra={"stream": stream, "error": str(exc)})
            raise InvalidArgument(f"the request was refused by storage: {exc}") from exc
        except StorageError as exc:
            self._health.write_failed(exc)
            raise NotReady("the event log does not take writes now, try again later") from exc
        self._health.write_succeeded()
        self._metrics.append_seconds.observe(time.perf_counter() - started)
        self._projection.expect(revision, events)
        try:
            await asyncio.wait_for(self._projection.wait_applied(revision), _APPLY_TIMEOUT)
        except TimeoutError as exc:
            raise NotReady("the write is durable but not yet visible") from exc
        return revision

    async def catch_up(self) -> None:
        """Wait until the projection includes everything committed so far."""
        with storage_unavailable():
            head = await self._log.head()
        await asyncio.wait_for(self._projection.wait_applied(head), _APPLY_TIMEOUT)

    def cut(self) -> tuple[int, list[ClusterView]]:
        """A consistent cut: the revision and every cluster view as of it (views are frozen)."""
        return self._projection.head, list(self._projection.views.values())

    def list_affiliates(
        self, cluster_id: str, client_ip: IPAddress | None = None
    ) -> tuple[int, list[Affiliate]]:
        """(revision, live affiliates of the cluster); a large list is charged to `client_ip`."""
        validate.cluster_id(cluster_id, self._limits)
        self._check_ready()
        view = self._projection.views.get(cluster_id)
        affiliates = list(view.affiliates.values()) if view else []
        self._admission.charge(client_ip, len(affiliates))
        return self._projection.head, affiliates

    async def history(
        self, cluster_id: str, after: int, limit: int
    ) -> tuple[int, list[HistoryEntry]]:
        """(horizon, the cluster's events after `after`); events <= horizon may be gone."""
        validate.cluster_id(cluster_id, self._limits)
        self._check_ready()
        with storage_unavailable():
            return await past.read_history(self._log, cluster_id, after, limit)

    async def affiliates_at(self, cluster_id: str, at: int | datetime) -> past.Membership:
        """The cluster's membership right after revision `at`, or at time `at`; RevisionGone."""
        validate.cluster_id(cluster_id, self._limits)
        self._check_ready()
        with storage_unavailable():
            return await past.membership_at(self._log, cluster_id, at)

    async def watch(
        self,
        cluster_id: str,
        *,
        since: int | None = None,
        idle: float | None = None,
        client_ip: IPAddress | None = None,
    ) -> AsyncGenerator[WatchMessage | None, None]:
        """A snapshot (or, with `since`, exactly the changes after it), then live changes;
        None after `idle` seconds without one (for keep-alives). Validation, readiness and the
        stream caps are checked at the first pull; large snapshots and replays are charged to
        `client_ip`; the stream ends after the lifetime (clients resume where they were)."""
        validate.cluster_id(cluster_id, self._limits)
        self._check_ready()
        client = self._admission.open_stream(client_ip)
        lifetime = self._options.watch_lifetime
        idle = min(idle or lifetime, lifetime)  # a quiet stream must wake to end on time too
        stream = watch_cluster(
            self._hub,
            self._log,
            cluster_id,
            since=since,
            idle=idle,
            on_catch_up=self._metrics.watch_catchups.inc,
            on_sent=functools.partial(self._admission.charge, client_ip),
        )
        ends = self._monotonic() + lifetime
        try:
            async for message in stream:
                yield message
                if self._monotonic() >= ends:
                    return
        finally:
            self._admission.close_stream(client)
            await stream.aclose()

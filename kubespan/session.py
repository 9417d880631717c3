"""One discovery service, as the agent sees it: hello, publish, watch, decrypt, reconnect.

The run loop follows siderolabs/discovery-client (reference/talos-discovery-service.md 8.3):
hello before every (re)connection, publish our record every refresh interval and at once when
it changes, watch, and on any failure drop everything and reconnect after an exponential
backoff. The affiliate map survives disconnections: there is no client-side expiry, so a
discovery outage never removes peers (only a new snapshot replaces the map).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from discovery.client import (
    ClientError,
    DiscoveryClient,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
)
from discovery.client.signing import RequestSigner
from membership.errors import RecordError, SealingError
from membership.record import DecodedAffiliate, IPAddress
from membership.sealing import ClusterKey, open_affiliate

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
UPDATE_TIMEOUT = 30.0
DELETE_TIMEOUT = 10.0

ClientFactory = Callable[..., DiscoveryClient]
"""Builds a client for a discovery URL (discovery.client.connect in production): called as
`clients(url)`, or `clients(url, signer=signer)` when the session signs its writes."""


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True if `event` is set within `timeout` seconds, False on timeout.

    asyncio.timeout rather than wait_for throughout the agent: on Python 3.11, wait_for can
    swallow a cancellation that races with the awaited thing finishing (CPython gh-86296),
    and a loop that survives its cancellation makes stop() hang forever.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class Backoff:
    """cenkalti/backoff defaults as Talos uses them: 0.5 s, x1.5, 60 s cap, +-50 % jitter."""

    def __init__(
        self,
        initial: float = 0.5,
        multiplier: float = 1.5,
        maximum: float = 60.0,
        jitter: float = 0.5,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.multiplier, self.maximum, self.jitter = (
            initial,
            multiplier,
            maximum,
            jitter,
        )
        self._rand = rand
        self._interval = initial

    def next(self) -> float:
        """The next delay in seconds (randomised); grows until reset()."""
        interval = self._interval
        self._interval = min(interval * self.multiplier, self.maximum)
        # Jitter spreads the reconnects of a whole cluster after a service restart.
        return interval * (1 - self.jitter + 2 * self.jitter * self._rand())

    def reset(self) -> None:
        self._interval = self.initial


@dataclass(frozen=True, slots=True)
class Publication:
    """Our sealed record and endpoints; `version` changes whenever the content does."""

    version: int
    data: bytes
    endpoints: tuple[bytes, ...]


class Session:
    """The connection to one discovery endpoint and the affiliates seen through it."""

    def __init__(
        self,
        url: str,
        *,
        cluster_id: str,
        node_id: str,
        key: ClusterKey,
        ttl: timedelta,
        refresh: timedelta,
        clients: ClientFactory,
        publication: Callable[[], Publication],
        on_change: Callable[[], None],
        on_public_ip: Callable[[], None],
        client_version: str,
        backoff: Backoff | None = None,
        signer: RequestSigner | None = None,
    ) -> None:
        self.configured_url = url
        self._signer = signer
        self.url = url
        self._cluster_id = cluster_id
        self._node_id = node_id
        self._key = key
        self._ttl = ttl
        self._refresh = refresh.total_seconds()
        self._clients = clients
        self._publication = publication
        self._on_change = on_change
        self._on_public_ip = on_public_ip
        self._client_version = client_version
        self._backoff = backoff or Backoff()
        self._wake = asyncio.Event()
        # What the status API shows.
        self.connected = False
        self.last_error: str | None = None
        self.affiliates: dict[str, DecodedAffiliate] = {}
        self.undecryptable: set[str] = set()
        self.decrypt_failures = 0
        self.revision: int | None = None
        self.public_ip: IPAddress | None = None
        self.published_version: int | None = None
        self.publishes = 0

    def _client(self) -> DiscoveryClient:
        if self._signer is None:
            return self._clients(self.url)
        return self._clients(self.url, signer=self._signer)

    @property
    def resumable(self) -> bool:
        # Only our HTTP API resumes a watch by revision; a gRPC watch starts with a snapshot.
        return self.url.startswith(("http://", "https://"))

    def republish(self) -> None:
        """Publish now (our record changed); a no-op while disconnected."""
        self._wake.set()

    async def run(self) -> None:
        """Serve this endpoint until cancelled; never raises for service trouble."""
        first = True
        while True:
            if not first:
                await asyncio.sleep(self._backoff.next())
            first = False
            client = self._client()
            try:
                await self._serve(client)
            except (ClientError, TimeoutError, OSError, ValueError) as exc:
                # Everything the service or the network can do to us ends up here; the map is
                # kept (see the module doc) and the loop reconnects after a backoff.
                message = str(exc) or type(exc).__name__
                if self.connected or message != self.last_error:
                    log.warning("discovery %s: %s", self.url, message)
                self.last_error = message
            except Exception as exc:
                # A bug must not silently end this endpoint's session for the agent's lifetime.
                log.exception("discovery %s: unexpected error", self.url)
                self.last_error = f"internal error: {exc!r}"
            finally:
                self.connected = False
                with suppress(Exception):
                    await asyncio.shield(client.aclose())

    async def _serve(self, client: DiscoveryClient) -> None:
        async with asyncio.timeout(HELLO_TIMEOUT):
            hello = await client.hello(self._cluster_id, self._client_version)
        if hello.redirect and hello.redirect != self.url:
            log.info("discovery %s redirects to %s", self.url, hello.redirect)
            self.url = hello.redirect
            # Revisions are per service: resuming elsewhere with ours would skip events.
            self.revision = None
            return
        if hello.client_ip != self.public_ip:
            self.public_ip = hello.client_ip
            self._on_public_ip()
        self.connected = True
        self.last_error = None
        log.info("discovery %s: connected", self.url)
        publisher = asyncio.create_task(self._publish_loop(client))
        watcher = asyncio.create_task(self._watch(client))
        try:
            done, _ = await asyncio.wait({publisher, watcher}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise the failure that ended this connection
        finally:
            for task in (publisher, watcher):
                task.cancel()
            await asyncio.gather(publisher, watcher, return_exceptions=True)
        raise ClientError("watch ended", retryable=True)

    async def _publish_loop(self, client: DiscoveryClient) -> None:
        while True:
            # Cleared before reading the publication: a change that lands during the update
            # sets it again and is published on the next turn, never lost.
            self._wake.clear()
            pub = self._publication()
            async with asyncio.timeout(UPDATE_TIMEOUT):
                await client.update(
                    self._cluster_id,
                    self._node_id,
                    data=pub.data,
                    endpoints=pub.endpoints,
                    ttl=self._ttl,
                )
            self.published_version = pub.version
            self.publishes += 1
            self._backoff.reset()
            await wait_event(self._wake, self._refresh)

    async def _watch(self, client: DiscoveryClient) -> None:
        since = self.revision if self.resumable else None
        async for event in client.watch(self._cluster_id, since=since):
            self.apply(event)
            self._on_change()

    def apply(self, event: WatchEvent) -> None:
        """Fold one watch event into this session's affiliate map."""
        if isinstance(event, Snapshot):
            self.affiliates = {}
            self.undecryptable = set()
            for raw in event.affiliates:
                self._put(raw)
        elif isinstance(event, Updated):
            self._put(event.affiliate)
        else:
            self.affiliates.pop(event.affiliate_id, None)
            self.undecryptable.discard(event.affiliate_id)
        if event.revision is not None:
            self.revision = event.revision

    def _put(self, raw: RawAffiliate) -> None:
        if raw.id == self._node_id:
            return
        if not raw.data:
            # Endpoint-only affiliate (data not published yet): skipped, as upstream.
            self.affiliates.pop(raw.id, None)
            self.undecryptable.discard(raw.id)
            return
        try:
            decoded = open_affiliate(self._key, raw.data, raw.endpoints)
        except (SealingError, RecordError) as exc:
            # Another cluster secret, a corrupt or forged record: never fatal, but visible.
            if raw.id not in self.undecryptable:
                log.warning("discovery %s: affiliate %s does not open: %s", self.url, raw.id, exc)
            self.decrypt_failures += 1
            self.undecryptable.add(raw.id)
            self.affiliates.pop(raw.id, None)
            return
        self.undecryptable.discard(raw.id)
        self.affiliates[raw.id] = decoded

    async def delete_self(self) -> str | None:
        """Delete our affiliate from this service; returns the error text, None on success."""
        client = self._client()
        try:
            async with asyncio.timeout(DELETE_TIMEOUT):
                await client.delete(self._cluster_id, self._node_id)
        except (ClientError, TimeoutError, OSError) as exc:
            return str(exc) or type(exc).__name__
        finally:
            with suppress(Exception):
                await client.aclose()
        return None

    def status(self) -> dict[str, object]:
        return {
            "endpoint": self.url,
            "configured_endpoint": self.configured_url,
            "connected": self.connected,
            "last_error": self.last_error,
            "affiliates": len(self.affiliates),
            "undecryptable": len(self.undecryptable),
            "decrypt_failures": self.decrypt_failures,
            "revision": self.revision,
            "public_ip": str(self.public_ip) if self.public_ip is not None else None,
            "published_version": self.published_version,
        }

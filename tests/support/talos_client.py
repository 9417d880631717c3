"""A test client that behaves like Talos' discovery client (siderolabs/discovery-client,
reference §8.3), to check the server against the traffic real nodes produce.

Per connection: backoff, Hello (following a redirect for good), Watch in a task (the first
message replaces the map; own id skipped; `deleted` removes; empty data skipped; records that
do not open are skipped), then AffiliateUpdate with own data, endpoints and TTL, plus one
endpoint-only AffiliateUpdate per other affiliate we "harvested" endpoints for; refreshed every
TTL/2 and on every change of local data. Any error reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address

import grpc

from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from membership.errors import RecordError, SealingError
from membership.record import AffiliateRecord, DecodedAffiliate, EndpointAddr
from membership.sealing import ClusterKey, open_affiliate, seal_endpoint_addr, seal_record

log = logging.getLogger("tests.talos_client")

HELLO_TIMEOUT = 10.0
REFRESH_TIMEOUT = 30.0


@dataclass
class Backoff:
    """cenkalti/backoff v4 exponential defaults (Talos: 0.5 s, x1.5, +-50 %, max 60 s)."""

    initial: float = 0.5
    multiplier: float = 1.5
    jitter: float = 0.5
    maximum: float = 60.0
    _current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._current = (
            self.initial
            if not self._current
            else min(self._current * self.multiplier, self.maximum)
        )
        return self._current * random.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._current = 0.0


class _Reconnect(Exception):
    """Drop the watch and go through backoff, Hello and Watch again."""


class TalosClient:
    """One node's discovery client. `run()` until cancelled; read `affiliates`."""

    def __init__(
        self,
        endpoint: str,
        cluster_id: str,
        key: ClusterKey,
        node_id: str,
        *,
        ttl: timedelta = timedelta(minutes=30),
        client_version: str = "v1.9.0",
        backoff: Backoff | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.ttl = ttl
        self.client_version = client_version
        self.affiliates: dict[str, DecodedAffiliate] = {}
        self.public_ip: IPv4Address | IPv6Address | None = None
        self.connections = 0
        self.changed = asyncio.Event()
        self._key = key
        self._backoff = backoff or Backoff()
        self._data: bytes | None = None
        self._endpoints: list[bytes] = []
        self._other_endpoints: dict[str, list[bytes]] = {}
        self._delete_pending = False
        self._refresh_now = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None

    # -- the discovery-client API ------------------------------------------------------------

    def set_local_data(
        self,
        record: AffiliateRecord,
        endpoints: list[EndpointAddr],
        other_endpoints: dict[str, list[EndpointAddr]] | None = None,
    ) -> None:
        """Seal (fresh nonce, as Go does) and publish at once; `other_endpoints` are harvested
        endpoints of other affiliates, by affiliate id."""
        self._data = seal_record(self._key, record, os.urandom(12))
        self._endpoints = [seal_endpoint_addr(self._key, e) for e in endpoints]
        self._other_endpoints = {
            affiliate_id: [seal_endpoint_addr(self._key, e) for e in addrs]
            for affiliate_id, addrs in (other_endpoints or {}).items()
        }
        self._delete_pending = False
        self._refresh_now.set()

    def delete_local_affiliate(self) -> None:
        self._delete_pending = True
        self._refresh_now.set()

    # -- the run loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._backoff.next())
                stub = await self._hello()
                if stub is None:
                    continue
                try:
                    await self._serve(stub)
                except _Reconnect:
                    continue
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    async def _hello(self) -> cluster_pb2_grpc.ClusterStub | None:
        if self._channel is None:
            keepalive_ms = int(max(10.0, self.ttl.total_seconds() / 10) * 1000)
            self._channel = grpc.aio.insecure_channel(
                self.endpoint, options=[("grpc.keepalive_time_ms", keepalive_ms)]
            )
        stub = cluster_pb2_grpc.ClusterStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            response = await stub.Hello(
                pb.HelloRequest(cluster_id=self.cluster_id, client_version=self.client_version),
                timeout=HELLO_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            # Go closes the connection here, so a new one picks up fresh TLS settings.
            log.debug("hello failed: %s", exc.code())
            await self._close()
            return None
        if response.HasField("redirect") and response.redirect.endpoint:
            self.endpoint = response.redirect.endpoint  # permanently, as the Go client does
            await self._close()
            return None
        self.public_ip = ip_address(response.client_ip) if response.client_ip else None
        self.connections += 1
        return stub

    async def _serve(self, stub: cluster_pb2_grpc.ClusterStub) -> None:
        call = stub.Watch(pb.WatchRequest(cluster_id=self.cluster_id))
        watcher = asyncio.create_task(self._watch(call))
        try:
            while True:
                self._refresh_now.clear()
                await self._refresh(stub)
                self._backoff.reset()
                ticker = asyncio.create_task(self._refresh_now.wait())
                done, _ = await asyncio.wait(
                    [ticker, watcher],
                    timeout=self.ttl.total_seconds() / 2,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                ticker.cancel()
                if watcher in done:
                    raise _Reconnect
        finally:
            call.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await watcher

    async def _refresh(self, stub: cluster_pb2_grpc.ClusterStub) -> None:
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):
                if self._delete_pending:
                    await stub.AffiliateDelete(
                        pb.AffiliateDeleteRequest(
                            cluster_id=self.cluster_id, affiliate_id=self.node_id
                        )
                    )
                    return
                if self._data is None:
                    return
                await stub.AffiliateUpdate(self._update(self.node_id, self._data, self._endpoints))
                for affiliate_id, endpoints in self._other_endpoints.items():
                    await stub.AffiliateUpdate(self._update(affiliate_id, None, endpoints))
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            log.debug("refresh failed: %s", exc)
            raise _Reconnect from exc

    def _update(
        self, affiliate_id: str, data: bytes | None, endpoints: list[bytes]
    ) -> pb.AffiliateUpdateRequest:
        request = pb.AffiliateUpdateRequest(
            cluster_id=self.cluster_id, affiliate_id=affiliate_id, affiliate_endpoints=endpoints
        )
        if data is not None:
            request.affiliate_data = data
        request.ttl.FromTimedelta(self.ttl)
        return request

    async def _watch(self, call: grpc.aio.UnaryStreamCall) -> None:
        snapshot = True
        async for message in call:
            assert isinstance(message, pb.WatchResponse)
            self._apply(message, snapshot)
            snapshot = False

    def _apply(self, message: pb.WatchResponse, snapshot: bool) -> None:
        if snapshot:
            self.affiliates = {}
        for affiliate in message.affiliates:
            if affiliate.id == self.node_id:
                continue
            if message.deleted:
                self.affiliates.pop(affiliate.id, None)
                continue
            if not affiliate.data:
                continue  # "no affiliate data (yet?)"
            try:
                decoded = open_affiliate(self._key, affiliate.data, affiliate.endpoints)
            except (SealingError, RecordError):
                continue
            self.affiliates[affiliate.id] = decoded
        self.changed.set()

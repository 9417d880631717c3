"""The discovery client over the Talos gRPC API (sidero.discovery.server.Cluster).

Works against any Talos-compatible service: ours, or upstream discovery.talos.dev. That API
has no revisions, so a watch always starts with a full snapshot and events carry no revision.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from discovery.client import (
    ClientError,
    Deleted,
    HelloReply,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
)
from discovery.client.signing import RequestSigner
from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc as pb_grpc
from membership.signatures import affiliate_path

# Talos pings every max(10 s, TTL/10); a fixed 30 s notices a dead watch within a minute and
# stays well above the 10 s minimum interval upstream servers enforce.
KEEPALIVE_SECONDS = 30.0
KEEPALIVE_TIMEOUT_SECONDS = 20.0

# The generated stub module has no type hints; calling it through Any keeps mypy --strict quiet.
_ClusterStub: Any = pb_grpc.ClusterStub

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    # ABORTED is the "lost update" of a slow watcher: reconnect and take a fresh snapshot.
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    # Our own cancellations surface as asyncio.CancelledError; a CANCELLED status therefore
    # comes from the server side (shutdown, proxy) and a new attempt may well succeed.
    grpc.StatusCode.CANCELLED,
}


class GrpcDiscoveryClient:
    """DiscoveryClient for grpc://host:port (plaintext h2c) or grpcs://host:port (TLS).

    `ca_file` replaces the system roots for grpcs (private CAs, tests); `keepalive` is the ping
    interval in seconds. The channel is made on first use, inside the running event loop, and
    closed by `aclose`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        ca_file: str | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
        signer: RequestSigner | None = None,
    ) -> None:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        target = rest.rstrip("/")
        if not sep or scheme not in ("grpc", "grpcs") or not target or "/" in target:
            raise ValueError(
                f"gRPC endpoint must be grpc://host:port or grpcs://host:port: {url!r}"
            )
        self.endpoint = url
        self._signer = signer
        self._scheme = scheme
        self._target = target
        self._timeout = timeout
        self._ca = Path(ca_file).read_bytes() if ca_file else None
        self._options = [
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT_SECONDS * 1000)),
            # A watch can sit idle for many minutes; without this, gRPC stops pinging after two
            # pings with no data in between and a dead connection would go unnoticed.
            ("grpc.http2.max_pings_without_data", 0),
            # A full snapshot (1024 affiliates of 2 KiB data and 64 x 32 B endpoints) is just
            # over gRPC's default 4 MiB receive limit.
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ]
        self._channel: Any = None
        self._stub: Any = None
        self._closed = False

    async def hello(self, cluster_id: str, client_version: str) -> HelloReply:
        request = pb.HelloRequest(cluster_id=cluster_id, client_version=client_version)
        reply: pb.HelloResponse = await self._unary("Hello", request)
        redirect = reply.redirect.endpoint if reply.HasField("redirect") else ""
        return HelloReply(
            client_ip=_client_ip(reply.client_ip),
            redirect=self._redirect_url(redirect) if redirect else None,
        )

    async def update(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> None:
        duration = Duration()
        duration.FromTimedelta(ttl)
        request = pb.AffiliateUpdateRequest(
            cluster_id=cluster_id,
            affiliate_id=affiliate_id,
            affiliate_endpoints=list(endpoints),
            ttl=duration,
        )
        # affiliate_data is `optional`: unset means "keep the data", unlike an empty blob.
        if data is not None:
            request.affiliate_data = data
        signer = self._signer
        if signer is None:
            await self._unary("AffiliateUpdate", request)
            return
        path = affiliate_path(cluster_id, affiliate_id)
        # The TTL as the server will read it back from the Duration, so both digests agree.
        seconds = duration.seconds + duration.nanos / 1e9
        fields = signer.grpc_update(path, data, list(endpoints), seconds)
        await self._unary("AffiliateUpdate", request, fields)
        signer.wrote(cluster_id, affiliate_id, data)

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        request = pb.AffiliateDeleteRequest(cluster_id=cluster_id, affiliate_id=affiliate_id)
        signer = self._signer
        if signer is None:
            await self._unary("AffiliateDelete", request)
            return
        record = signer.last_written(cluster_id, affiliate_id)
        if record is None:
            # As in the HTTP client: name the record the service holds now.
            current = [a for a in await self.list(cluster_id) if a.id == affiliate_id]
            record = current[0].data if current else b""
        fields = signer.delete(affiliate_path(cluster_id, affiliate_id), record)
        await self._unary("AffiliateDelete", request, fields)

    async def list(self, cluster_id: str) -> list[RawAffiliate]:
        reply: pb.ListResponse = await self._unary("List", pb.ListRequest(cluster_id=cluster_id))
        return [_affiliate(a) for a in reply.affiliates]

    async def watch(
        self, cluster_id: str, *, since: int | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        # `since` is ignored: the Talos API cannot resume, so a watch always begins with a
        # snapshot, which replaces whatever the caller knew.
        del since
        stub = self._get_stub()
        # No deadline: the stream lives until it breaks; keepalive pings detect a dead peer.
        call = stub.Watch(pb.WatchRequest(cluster_id=cluster_id))
        try:
            first = True
            async for message in call:
                if first:
                    first = False
                    yield Snapshot(
                        affiliates=tuple(_affiliate(a) for a in message.affiliates), revision=None
                    )
                    continue
                # One affiliate per message on the wire; iterate anyway so a batching server
                # loses nothing.
                for affiliate in message.affiliates:
                    if message.deleted:
                        yield Deleted(affiliate_id=affiliate.id, revision=None)
                    else:
                        yield Updated(affiliate=_affiliate(affiliate), revision=None)
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from exc
        finally:
            # The caller stopped iterating (or we failed): end the RPC rather than leave it
            # streaming into a buffer nobody reads.
            call.cancel()
        # Upstream ends a watch with OK when it shuts down.
        raise ClientError("watch stream ended", retryable=True)

    async def __aenter__(self) -> GrpcDiscoveryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _get_stub(self) -> Any:
        if self._closed:
            raise ClientError("client is closed", retryable=False)
        if self._stub is None:
            if self._scheme == "grpcs":
                credentials = grpc.ssl_channel_credentials(root_certificates=self._ca)
                self._channel = grpc.aio.secure_channel(self._target, credentials, self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self._target, self._options)
            self._stub = _ClusterStub(self._channel)
        return self._stub

    async def _unary(
        self, method: str, request: Any, metadata: dict[str, str] | None = None
    ) -> Any:
        rpc = getattr(self._get_stub(), method)
        try:
            if metadata is None:
                return await rpc(request, timeout=self._timeout)
            return await rpc(request, timeout=self._timeout, metadata=tuple(metadata.items()))
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from exc

    def _redirect_url(self, endpoint: str) -> str:
        # Talos redirects name a bare "host:port"; keep our scheme (TLS or not) so the caller
        # can pass the result straight to connect().
        return endpoint if "://" in endpoint else f"{self._scheme}://{endpoint}"


def _rpc_error(exc: grpc.aio.AioRpcError) -> ClientError:
    code = exc.code()
    details = exc.details() or code.name
    retryable = code in _RETRYABLE or (
        # Upstream delays rate-limited calls and fails them only when the delay would outlast
        # the deadline ("rate limit exceeds request timeout"); capacity limits share the code
        # but retrying cannot fix them.
        code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in details.lower()
    )
    return ClientError(f"{details} (gRPC {code.name})", retryable=retryable)


def _client_ip(raw: bytes) -> IPv4Address | IPv6Address | None:
    if len(raw) not in (4, 16):
        return None  # unset (client IP reporting disabled) or not an address at all
    address = ip_address(raw)
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; the caller wants the IPv4.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _affiliate(message: pb.Affiliate) -> RawAffiliate:
    return RawAffiliate(id=message.id, data=message.data, endpoints=tuple(message.endpoints))

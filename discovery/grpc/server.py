"""The Talos-compatible gRPC front end: `sidero.discovery.server.Cluster` on the shared core.

Each RPC maps onto one `DiscoveryService` call (reference §1.3). Per-call plumbing (logs, rate
limit, metrics, panic recovery) is in grpc_interceptors.py, TLS reloading in grpc_tls.py.

    server = await start_grpc_server(core, settings, metrics)  # settings.grpc_addr, ":3000"
    server.port                                                 # the bound port (with ":0")
    await server.stop(grace=2.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterable, Iterator

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc_reflection.v1alpha import reflection

from discovery.core.changes import Change, WatchSnapshot
from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.grpc import signatures
from discovery.grpc.interceptors import Call, CallHandlers
from discovery.grpc.tls import CertificateReloader
from discovery.proto import cluster_pb2 as pb
from discovery.settings import Settings, parse_addr
from discovery.startup import StartupError
from membership.model import Affiliate

log = logging.getLogger("discovery.grpc")

SERVICE = "sidero.discovery.server.Cluster"

# Each change's WatchResponse, encoded once and shared by every gRPC watcher of the cluster.
_frames: weakref.WeakKeyDictionary[Change, bytes] = weakref.WeakKeyDictionary()

MAX_REQUEST_BYTES = 64 * 1024
# Largest first Watch message; the rest of a larger snapshot follows as updates.
SNAPSHOT_MESSAGE_BYTES = 1024 * 1024
# Calls grpc core may hold before the event loop picks them up (see _OPTIONS): three times
# the 10,000 streams a restart must take at once. Each holds its headers (a few KiB at most),
# and the loop picks up a couple of thousand a second, so a longer queue would only hold
# calls whose clients gave up.
MAX_PENDING_CALLS = 32_768

_OPTIONS: list[tuple[str, int]] = [
    # Upstream lowered its gRPC buffers to 16 KiB for "lots of connections with relatively low
    # traffic" (commit 196c609). grpc core exposes the read side only: the write-side
    # `grpc.http2.write_buffer_size` is a per-stream queue limit, a different thing.
    ("grpc.experimental.tcp_read_chunk_size", 16 * 1024),
    ("grpc.experimental.tcp_max_read_chunk_size", 16 * 1024),
    # Upstream's keepalive.EnforcementPolicy{MinTime: 10s}: clients may ping every 10 s, and
    # more often earns strikes and a GOAWAY. grpc core's default is 5 min, which would strike
    # Talos' keepalive pings (every max(10 s, TTL/10) = 3 min) and cut their watches.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    # grpc sets SO_REUSEPORT by default: a second server on the same port would silently
    # share its connections instead of failing to start.
    ("grpc.so_reuseport", 0),
    # The largest valid request is a few KiB (2 KiB of data, 64 endpoints of 32 bytes): the
    # default 4 MiB let one call cost a real share of a core to decode and deduplicate.
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    # grpc core queues a call that arrives before the server asked for the next one, and
    # grpc.aio asks for one call at a time from the event loop. Past 1,000 queued calls core
    # cancels new ones at random, and every one past 3,000 (the client sees CANCELLED, our
    # handler never runs): when every node reconnected after a restart, about a tenth of
    # 2,000 watches were lost. Queue them (no random drop: both limits equal): our admission
    # (stream caps, rate limit) answers each with a reason, and core still cancels a call
    # nobody picked up within grpc.server_max_unrequested_time_in_server (30 s).
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
]


def _affiliate(a: Affiliate) -> pb.Affiliate:
    return pb.Affiliate(id=a.id, data=a.data, endpoints=a.endpoint_blobs())


def _ttl_seconds(request: pb.AffiliateUpdateRequest) -> float:
    """The request's TTL; missing counts as zero (expires at the next GC, like upstream)."""
    if not request.HasField("ttl"):
        return 0.0
    ttl: Duration = request.ttl
    return ttl.seconds + ttl.nanos / 1e9


def _render(change: Change) -> bytes:
    """One encoded WatchResponse per change, shared by every gRPC watcher of the cluster."""
    cached = _frames.get(change)
    if cached is None:
        if change.affiliate is None:
            message = pb.WatchResponse(
                deleted=True, affiliates=[pb.Affiliate(id=change.affiliate_id)]
            )
        else:
            message = pb.WatchResponse(affiliates=[_affiliate(change.affiliate)])
        cached = _frames[change] = message.SerializeToString()
    return cached


def _snapshot_messages(affiliates: Iterable[Affiliate]) -> Iterator[bytes]:
    """The snapshot as the first message, split when large: the rest follow as updates.

    A full cluster's snapshot is over 4 MiB, grpc's default receive limit, which every
    client (Talos included) keeps: one message would fail their watch for good. Talos treats
    only the first message as the snapshot and every later one as upserts, so the same
    affiliates in several messages leave it with the same state.
    """
    batch: list[pb.Affiliate] = []
    size, sent = 0, False
    for affiliate in affiliates:
        message = _affiliate(affiliate)
        batch.append(message)
        size += message.ByteSize() + 8  # field tag and length prefix, generously
        if size >= SNAPSHOT_MESSAGE_BYTES:
            yield pb.WatchResponse(affiliates=batch).SerializeToString()
            batch, size, sent = [], 0, True
    if batch or not sent:  # the first message is the snapshot, even an empty one
        yield pb.WatchResponse(affiliates=batch).SerializeToString()


def _resync(known: set[str], snapshot: WatchSnapshot) -> Iterator[bytes]:
    """Messages that take a watcher that has seen `known` to `snapshot`, one affiliate each.

    The core sends a snapshot mid-stream when a lagging watcher cannot replay the log (it
    was compacted meanwhile). Talos clients only treat the *first* message as a snapshot, so
    it is turned into deletions of what vanished plus an update per live affiliate.
    """
    live = {a.id for a in snapshot.affiliates}
    for affiliate_id in sorted(known - live):
        deleted = pb.WatchResponse(deleted=True, affiliates=[pb.Affiliate(id=affiliate_id)])
        yield deleted.SerializeToString()
    for affiliate in snapshot.affiliates:
        yield pb.WatchResponse(affiliates=[_affiliate(affiliate)]).SerializeToString()


class ClusterServicer:
    """The five RPCs, each a thin mapping onto the core; errors are mapped by CallHandlers."""

    def __init__(self, service: DiscoveryService) -> None:
        self._service = service
        self._watches: set[asyncio.Task[object]] = set()
        self._closing = False

    async def hello(self, request: pb.HelloRequest, call: Call) -> pb.HelloResponse:
        result = self._service.hello(request.cluster_id, request.client_version, call.client_ip)
        response = pb.HelloResponse()
        if result.client_ip is not None:
            # netip.Addr.MarshalBinary: 4 bytes for IPv4 (mapped peers are unmapped by
            # clientip), 16 for IPv6.
            response.client_ip = result.client_ip.packed
        if result.redirect:
            response.redirect.endpoint = result.redirect
        return response

    async def affiliate_update(
        self, request: pb.AffiliateUpdateRequest, call: Call
    ) -> pb.AffiliateUpdateResponse:
        data = request.affiliate_data if request.HasField("affiliate_data") else None
        endpoints, ttl = list(request.affiliate_endpoints), _ttl_seconds(request)
        proof = signatures.update_proof(
            call.metadata,
            request.cluster_id,
            request.affiliate_id,
            data=data,
            endpoints=endpoints,
            ttl_seconds=ttl,
        )
        await self._service.update_affiliate(
            request.cluster_id,
            request.affiliate_id,
            data=data,
            endpoints=endpoints,
            ttl_seconds=ttl,
            proof=proof,
            client_ip=call.client_ip,
        )
        return pb.AffiliateUpdateResponse()

    async def affiliate_delete(
        self, request: pb.AffiliateDeleteRequest, call: Call
    ) -> pb.AffiliateDeleteResponse:
        proof = signatures.delete_proof(call.metadata, request.cluster_id, request.affiliate_id)
        await self._service.delete_affiliate(request.cluster_id, request.affiliate_id, proof)
        return pb.AffiliateDeleteResponse()

    async def list(self, request: pb.ListRequest, call: Call) -> pb.ListResponse:
        _, affiliates = self._service.list_affiliates(request.cluster_id, call.client_ip)
        return pb.ListResponse(affiliates=[_affiliate(a) for a in affiliates])

    async def watch(self, request: pb.WatchRequest, call: Call) -> None:
        """One message with the whole snapshot (even when empty), then one per change."""
        task = asyncio.current_task()
        assert task is not None
        stream = self._service.watch(request.cluster_id, client_ip=call.client_ip)
        self._watches.add(task)
        try:
            # The first pull validates and subscribes: errors surface before anything is sent.
            first = await anext(stream)
            assert isinstance(first, WatchSnapshot)
            known = {a.id for a in first.affiliates}
            for data in _snapshot_messages(first.affiliates):
                await call.context.write(data)
            async for message in stream:
                if isinstance(message, Change):
                    if message.affiliate is None:
                        known.discard(message.affiliate_id)
                    else:
                        known.add(message.affiliate_id)
                    await call.context.write(_render(message))
                elif isinstance(message, WatchSnapshot):
                    for data in _resync(known, message):
                        await call.context.write(data)
                    known = {a.id for a in message.affiliates}
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Shutdown: end the stream with OK, as upstream does, so clients just reconnect.
            task.uncancel()
        finally:
            self._watches.discard(task)
            await stream.aclose()

    async def close(self) -> None:
        """End every open watch stream cleanly; new streams are refused by the server stop."""
        self._closing = True
        tasks = list(self._watches)
        for task in tasks:
            task.cancel()
        if tasks:
            # These are grpc's per-call tasks: done once the final status has been sent.
            await asyncio.wait(tasks)


class GrpcServer:
    """A started listener. `port` is the bound port, `address` what it was bound to."""

    def __init__(
        self, server: grpc.aio.Server, servicer: ClusterServicer, address: str, port: int
    ) -> None:
        self.server = server
        self.address = address
        self.port = port
        self._servicer = servicer

    async def stop(self, grace: float | None = None) -> None:
        """End watch streams, then stop: in-flight unary calls get `grace` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._servicer.close(), grace)
        await self.server.stop(grace)


def bind_address(addr: str) -> str:
    """grpc's form of a HOST:PORT setting: ":3000" means every interface."""
    host, port = parse_addr(addr)
    if port is None:
        raise StartupError(f"gRPC address must be HOST:PORT or :PORT, got {addr!r}")
    if not host:
        host = "[::]"  # dual-stack: IPv4 clients arrive as ::ffff:a.b.c.d (unmapped later)
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _handlers(calls: CallHandlers, servicer: ClusterServicer) -> dict[str, grpc.RpcMethodHandler]:
    return {
        "Hello": calls.unary("Hello", pb.HelloRequest, servicer.hello),
        "AffiliateUpdate": calls.unary(
            "AffiliateUpdate", pb.AffiliateUpdateRequest, servicer.affiliate_update
        ),
        "AffiliateDelete": calls.unary(
            "AffiliateDelete", pb.AffiliateDeleteRequest, servicer.affiliate_delete
        ),
        "List": calls.unary("List", pb.ListRequest, servicer.list),
        "Watch": calls.server_stream("Watch", pb.WatchRequest, servicer.watch),
    }


def _check_methods(names: Iterable[str]) -> None:
    # The handler table must cover the proto's service exactly (a typo would be UNIMPLEMENTED).
    declared = {m.name for m in pb.DESCRIPTOR.services_by_name["Cluster"].methods}
    if set(names) != declared:
        raise RuntimeError(f"gRPC handlers {sorted(names)} do not match the proto {declared}")


async def start_grpc_server(
    core: DiscoveryService, settings: Settings, metrics: Metrics, *, reuse_port: bool = False
) -> GrpcServer:
    """Listen on `settings.grpc_addr`: h2c, or TLS (reloaded on change) when a cert is set.
    `reuse_port` shares the port with the other workers of one supervisor.

    Raises StartupError when the address cannot be bound or the certificate is unusable."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise StartupError("--tls-cert and --tls-key must be given together")
    servicer = ClusterServicer(core)
    handlers = _handlers(CallHandlers(core, settings, metrics, SERVICE), servicer)
    _check_methods(handlers)
    options = _OPTIONS
    if reuse_port:
        options = [o for o in _OPTIONS if o[0] != "grpc.so_reuseport"] + [("grpc.so_reuseport", 1)]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    if settings.grpc_reflection:
        # Lets grpcurl and similar tools list and call the API without the .proto files; the
        # schema is public (Talos' discovery API), so describing it reveals nothing.
        reflection.enable_server_reflection((SERVICE, reflection.SERVICE_NAME), server)
    address = bind_address(settings.grpc_addr)
    port: int
    try:
        if settings.tls_cert:
            try:
                reloader = CertificateReloader(settings.tls_cert, settings.tls_key)
            except (OSError, ValueError) as exc:
                raise StartupError(f"TLS for gRPC: {exc}") from None
            port = server.add_secure_port(address, reloader.credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        # grpc says only "Failed to bind to address ..." (details need GRPC_VERBOSITY).
        raise StartupError(
            f"cannot listen on {settings.grpc_addr} for gRPC: address in use or not available"
        ) from None
    await server.start()
    log.info(
        "API server starting",
        extra={"address": address, "port": port, "tls": bool(settings.tls_cert)},
    )
    return GrpcServer(server, servicer, address, port)

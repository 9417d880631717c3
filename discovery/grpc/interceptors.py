"""Per-call plumbing of the gRPC front end, in upstream's interceptor order (reference §4):
request log -> rate limit -> Prometheus -> panic recovery, around every unary call and
around each stream.

This wraps method handlers instead of using `grpc.aio.ServerInterceptor`: a wrapped handler
sees the request (the log names its cluster) and decodes it itself, so a malformed message is
logged and counted like any other failed call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

import grpc
from google.protobuf.message import DecodeError, Message

from discovery.core import clientip
from discovery.core.clientip import IPAddress
from discovery.core.errors import (
    InvalidArgument,
    NotReady,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
)
from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.settings import Settings

log = logging.getLogger("discovery.grpc")

Request = TypeVar("Request", bound=Message)
Result = TypeVar("Result")

_STATUS: dict[type[ServiceError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}

# Failures that are the server's fault; everything else is the caller's doing (or its choice).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

# Request fields upstream's logger adds when the request has them.
_LOGGED_FIELDS = ("cluster_id", "affiliate_id", "client_version")
# Peer strings whose parsed address is remembered (each is one open or recent connection).
_PEERS_CACHED = 4096


class LogSampler:
    """Upstream's log sampling (zap's production default): per method and second, the first
    `initial` lines, then every `thereafter`-th. A line per call would cost a sixth of a call's
    CPU at full load; failures are never sampled."""

    def __init__(self, initial: int = 100, thereafter: int = 100) -> None:
        self._initial = initial
        self._thereafter = thereafter
        self._counts: dict[str, tuple[int, int]] = {}

    def allow(self, method: str, now: float) -> bool:
        second = int(now)
        window, count = self._counts.get(method, (second, 0))
        count = count + 1 if window == second else 1
        self._counts[method] = (second, count)
        return count <= self._initial or (count - self._initial) % self._thereafter == 0


class Call:
    """What a servicer method needs to know about its call besides the request."""

    __slots__ = ("_metadata", "client_ip", "context", "peer")

    def __init__(
        self, context: grpc.aio.ServicerContext, peer: str, client_ip: IPAddress | None
    ) -> None:
        self.context = context
        self.peer = peer
        self.client_ip = client_ip
        self._metadata: Sequence[tuple[str, str | bytes]] | None = None

    def metadata(self, name: str) -> str | None:
        """The call's metadata value for `name` (lowercase), None when absent."""
        # grpc builds a new tuple on every invocation_metadata(); an unsigned update asks
        # for two absent keys, so fetch it once per call.
        if self._metadata is None:
            self._metadata = self.context.invocation_metadata() or ()
        for key, value in self._metadata:
            if key == name and isinstance(value, str):
                return value
        return None


UnaryBehavior = Callable[[Request, Call], Awaitable[Message]]
StreamBehavior = Callable[[Request, Call], Awaitable[None]]


def peer_address(peer: str) -> str | None:
    """ "ip:port" from grpc's peer string: "ipv4:1.2.3.4:5", "ipv6:[::1]:5" or, in newer
    grpc releases, percent-encoded "ipv6:%5B::1%5D:5". None for other transports."""
    scheme, _, address = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return None
    return unquote(address)


def _host(address: str | None) -> str | None:
    return address.rpartition(":")[0] if address else None


def _no_header(name: str) -> None:
    return None


class _MethodMetrics:
    """The metric children of one method, looked up once instead of on every call."""

    def __init__(self, metrics: Metrics, kind: str, grpc_service: str, method: str):
        self.labels = (kind, grpc_service, method)
        self.started = metrics.grpc_started.labels(*self.labels)
        self.seconds = metrics.grpc_seconds.labels(*self.labels)
        self._metrics = metrics
        self._by_code: dict[str, tuple[Any, Any]] = {}

    def handled(self, code: grpc.StatusCode, elapsed: float) -> None:
        children = self._by_code.get(code.name)
        if children is None:
            kind, grpc_service, method = self.labels
            children = self._by_code[code.name] = (
                self._metrics.grpc_handled.labels(kind, grpc_service, method, code.name),
                self._metrics.requests.labels("grpc", method, code.name),
            )
        for counter in children:
            counter.inc()
        self.seconds.observe(elapsed)


class CallHandlers:
    """Builds grpc method handlers that run a servicer method inside the per-call plumbing."""

    def __init__(
        self, core: DiscoveryService, settings: Settings, metrics: Metrics, grpc_service: str
    ) -> None:
        self._core = core
        self._settings = settings
        self._metrics = metrics
        self._grpc_service = grpc_service
        self._sampler = LogSampler()
        # The transport peer's address and IP by grpc's peer string: the same for every call
        # of a connection, and parsing them was a third of this layer's cost per call. Only
        # used when no proxy header is trusted (the IP then depends on the call).
        self._peers: dict[str, tuple[str | None, IPAddress | None]] | None = (
            None if settings.trust_x_real_ip or settings.trust_x_forwarded_for else {}
        )

    def unary(
        self, method: str, request_type: type[Request], behavior: UnaryBehavior[Request]
    ) -> grpc.RpcMethodHandler:
        metrics = _MethodMetrics(self._metrics, "unary", self._grpc_service, method)

        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            response = await self._handle(metrics, request_type, raw, context, behavior)
            return response.SerializeToString()

        # No (de)serializers: requests are decoded inside `_handle`, responses encoded above.
        return grpc.unary_unary_rpc_method_handler(handle)

    def server_stream(
        self, method: str, request_type: type[Request], behavior: StreamBehavior[Request]
    ) -> grpc.RpcMethodHandler:
        """`behavior` writes already-encoded messages with `call.context.write(bytes)`."""
        metrics = _MethodMetrics(self._metrics, "server_stream", self._grpc_service, method)

        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> None:
            await self._handle(metrics, request_type, raw, context, behavior)

        return grpc.unary_stream_rpc_method_handler(handle)

    async def _handle(
        self,
        metrics: _MethodMetrics,
        request_type: type[Request],
        raw: bytes,
        context: grpc.aio.ServicerContext,
        behavior: Callable[[Request, Call], Awaitable[Result]],
    ) -> Result:
        """Run `behavior`; on failure, log, count and abort the call with the mapped status."""
        started = time.perf_counter()
        metrics.started.inc()
        address, client_ip = self._peer(context)
        code, details = grpc.StatusCode.OK, ""
        request: Message | None = None
        results: list[Result] = []
        try:
            try:
                decoded = request_type.FromString(raw)
            except DecodeError as exc:
                # What grpc-go answers for a body that does not decode.
                code = grpc.StatusCode.INTERNAL
                details = f"grpc: error unmarshalling request: {exc}"
            else:
                request = decoded
                call = Call(context, address or "", client_ip)
                if self._peers is None:
                    call.client_ip = self._client_ip(address, call)
                # Upstream delays a call until the client's bucket has a token
                # (`limiter.Wait(ctx)`) and fails only when that would outlast the deadline.
                await self._core.admit(call.client_ip, wait_up_to=context.time_remaining())
                results.append(await behavior(decoded, call))
        except ServiceError as exc:
            code, details = _STATUS.get(type(exc), grpc.StatusCode.INTERNAL), exc.message
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "cancelled"
            raise
        except Exception:
            # Panic recovery: a bug fails this call only; the server keeps serving.
            log.exception("grpc panic", extra={"method": metrics.labels[2]})
            code, details = grpc.StatusCode.INTERNAL, "internal error"
        finally:
            elapsed = time.perf_counter() - started
            metrics.handled(code, elapsed)
            self._log(metrics.labels, elapsed, code, details, address, request)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, details)  # raises
        return results[0]

    def _peer(self, context: grpc.aio.ServicerContext) -> tuple[str | None, IPAddress | None]:
        """The peer's "ip:port" and, unless proxy headers decide it, the client IP."""
        peer = context.peer()
        peers = self._peers
        if peers is None:
            return peer_address(peer), None
        known = peers.get(peer)
        if known is None:
            if len(peers) >= _PEERS_CACHED:
                peers.clear()  # connections come and go: start over rather than track age
            address = peer_address(peer)
            known = peers[peer] = (
                address,
                clientip.resolve(
                    _host(address), _no_header, trust_x_real_ip=False, trust_x_forwarded_for=False
                ),
            )
        return known

    def _client_ip(self, address: str | None, call: Call) -> IPAddress | None:
        return clientip.resolve(
            _host(address),
            call.metadata,
            trust_x_real_ip=self._settings.trust_x_real_ip,
            trust_x_forwarded_for=self._settings.trust_x_forwarded_for,
        )

    def _log(
        self,
        labels: tuple[str, str, str],
        elapsed: float,
        code: grpc.StatusCode,
        details: str,
        address: str | None,
        request: Message | None,
    ) -> None:
        _, service, method = labels
        if code is grpc.StatusCode.OK or code is grpc.StatusCode.CANCELLED:
            level = logging.INFO
        elif code in _SERVER_FAULTS and request is not None:  # None: it did not decode
            level = logging.ERROR
        else:
            level = logging.WARNING
        if not log.isEnabledFor(level):
            return
        if level == logging.INFO and not self._sampler.allow(method, time.monotonic()):
            return
        extra: dict[str, object] = {
            "duration": round(elapsed, 6),
            "code": code.name,
            "peer.address": address,
        }
        if details and code is not grpc.StatusCode.OK:
            extra["error"] = details
        if request is not None:
            for field in _LOGGED_FIELDS:
                value = getattr(request, field, "")
                if value:
                    extra[field] = value
        log.log(level, f"/{service}/{method}", extra=extra)

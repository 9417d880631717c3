"""The one ASGI layer for our own concerns, and the hot routes served inside it.

Every request passes here once: IDs are routed on the raw path (cluster ids are base64 and may
hold '/', percent-encoded), bodies are capped, and requests are counted by route and status.
`PUT` and `DELETE /v1/clusters/{c}/affiliates/{a}` carry almost all of the traffic (every node
refreshes its record), so their common case is answered right here, without FastAPI's
dependency solving, pydantic and the framework's middleware stack, which together cost several
times the rest of a durable write; so is the watch stream every node holds open (http/sse.py).
The FastAPI routes stay the documented schema and serve everything else: a body this fast path
does not accept whole (bad JSON, a failed check, another content type) is replayed to them
unchanged, so errors, their status codes and messages come from one place.
"""

from __future__ import annotations

import json
import logging
import math

import msgspec
from prometheus_client import Counter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from discovery.core import clientip
from discovery.core.clientip import IPAddress
from discovery.core.errors import ServiceError
from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.http import sse
from discovery.http.deps import path_id
from discovery.http.errors import service_error_parts
from discovery.settings import Settings
from membership.codec import decode_b64

_CLUSTERS = b"/v1/clusters/"
_AFFILIATES = "affiliates"
_MAX_ENDPOINTS = 1024  # schemas.AffiliateUpdate.endpoints' max_length
_JSON = b"application/json"
_HEADERS_JSON = [(b"content-type", _JSON)]
_SIGNATURE_HEADERS = frozenset({b"signature", b"signature-input"})
_INTERNAL = b'{"error":{"code":"internal","message":"internal error"}}'

log = logging.getLogger("discovery.http")


class _Update(msgspec.Struct, forbid_unknown_fields=True):
    """The accepting half of schemas.AffiliateUpdate; anything it refuses goes to pydantic."""

    ttl: float
    data: str | None = None
    endpoints: list[str] = []


_decode_update = msgspec.json.Decoder(_Update).decode


class Front:
    """Raw-path routing, body cap, request metrics, and the fast `PUT`/`DELETE` affiliate."""

    def __init__(
        self, app: ASGIApp, *, core: DiscoveryService, settings: Settings, metrics: Metrics
    ) -> None:
        self.app = app
        self._core = core
        self._settings = settings
        self._max_bytes = settings.max_body_bytes
        self._requests = metrics.requests
        self._counters: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and (declared > self._max_bytes or declared < 0):
            await _refuse(send, self._max_bytes)
            return
        raw = scope.get("raw_path")
        segments: list[str] | None = None
        if raw and raw.startswith(_CLUSTERS):
            path = raw.split(b"?", 1)[0].decode("latin-1")
            scope = dict(scope, path=path)
            parts = path[len(_CLUSTERS) :].split("/")
            if len(parts) == 3 and parts[1] == _AFFILIATES and parts[0] and parts[2]:
                segments = parts
            elif len(parts) == 2 and parts[1] == "watch" and parts[0] and scope["method"] == "GET":
                taken, since = sse.since_of(scope.get("query_string", b""))
                if taken:
                    await self._watch(scope, receive, send, parts[0], since)
                    return
        method = scope["method"]
        if segments is not None and _signed(scope):
            # Signed writes are checked by the documented routes (http/signatures.py).
            segments = None
        if segments is not None and method == "PUT":
            await self._put(scope, receive, send, segments[0], segments[2])
        elif segments is not None and method == "DELETE":
            await self._delete(scope, send, segments[0], segments[2])
        else:
            await self._pass(scope, receive, send)

    async def _pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        """To FastAPI, with the body cap and the request counted under the route's name."""
        status = 500
        seen = 0
        limit = self._max_bytes

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body is larger than {limit} bytes")
            return message

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited, recording)
        finally:
            # The route's name, not the path: ids in paths would explode the label set.
            route = scope.get("route")
            self._count(getattr(route, "name", None) or "unmatched", status)

    async def _put(
        self, scope: Scope, receive: Receive, send: Send, cluster: str, affiliate: str
    ) -> None:
        body = await self._read_body(receive, send)
        if body is None:
            return
        update = _accept(scope, body)
        if update is None:
            await self._pass(scope, _replay(body, receive), send)
            return
        data, endpoints, ttl = update
        try:
            client_ip = await self._admit(scope)
            revision = await self._core.update_affiliate(
                path_id(cluster, "cluster ID"),
                path_id(affiliate, "affiliate ID"),
                data=data,
                endpoints=endpoints,
                ttl_seconds=ttl,
                client_ip=client_ip,
            )
        except ServiceError as exc:
            await self._error(send, "put_affiliate", exc)
            return
        except Exception:
            await self._crashed(send, "put_affiliate")
            return
        await self._revision(send, "put_affiliate", revision)

    async def _delete(self, scope: Scope, send: Send, cluster: str, affiliate: str) -> None:
        try:
            await self._admit(scope)
            revision = await self._core.delete_affiliate(
                path_id(cluster, "cluster ID"), path_id(affiliate, "affiliate ID")
            )
        except ServiceError as exc:
            await self._error(send, "delete_affiliate", exc)
            return
        except Exception:
            await self._crashed(send, "delete_affiliate")
            return
        await self._revision(send, "delete_affiliate", revision)

    async def _watch(
        self, scope: Scope, receive: Receive, send: Send, cluster: str, since: int | None
    ) -> None:
        try:
            client_ip = await self._admit(scope)
            last_id = sse.last_event_id(scope["headers"])
            stream, first = await sse.open_watch(self._core, cluster, since, last_id, client_ip)
        except ServiceError as exc:
            await self._error(send, "watch", exc)
            return
        except Exception:
            await self._crashed(send, "watch")
            return
        try:
            await sse.stream_watch(stream, first, receive, send)
        finally:
            self._count("watch", 200)

    async def _admit(self, scope: Scope) -> IPAddress | None:
        client = scope.get("client")
        settings = self._settings
        headers = scope["headers"]

        def header(name: str) -> str | None:
            key = name.encode("latin-1")
            for k, v in headers:
                if k.lower() == key:
                    return str(v.decode("latin-1"))
            return None

        client_ip = clientip.resolve(
            client[0] if client else None,
            header,
            trust_x_real_ip=settings.trust_x_real_ip,
            trust_x_forwarded_for=settings.trust_x_forwarded_for,
        )
        await self._core.admit(client_ip)
        return client_ip

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once a 413 is sent (or the client went away)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                await _refuse(send, self._max_bytes, close=False)
                self._count("put_affiliate", 413)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _revision(self, send: Send, operation: str, revision: int) -> None:
        # Written directly: the hottest response of the API.
        body = b'{"revision":%d}' % revision
        await _respond(send, 200, body, [])
        self._count(operation, 200)

    async def _error(self, send: Send, operation: str, exc: ServiceError) -> None:
        status, body, headers = service_error_parts(exc)
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await _respond(send, status, body, extra)
        self._count(operation, status)

    async def _crashed(self, send: Send, operation: str) -> None:
        # This layer is outside FastAPI's error handling: answer as its 500 handler does.
        log.exception("unhandled error", extra={"operation": operation})
        await _respond(send, 500, _INTERNAL, [])
        self._count(operation, 500)

    def _count(self, operation: str, status: int) -> None:
        counter = self._counters.get((operation, status))
        if counter is None:
            counter = self._counters[operation, status] = self._requests.labels(
                "http", operation, str(status)
            )
        counter.inc()


def _signed(scope: Scope) -> bool:
    return any(name in _SIGNATURE_HEADERS for name, _ in scope["headers"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def _accept(scope: Scope, body: bytes) -> tuple[bytes | None, list[bytes], float] | None:
    """(data, endpoints, ttl) when the body is a valid update in the common form, else None
    (pydantic then decides, with its own messages)."""
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != _JSON:
        return None
    try:
        update = _decode_update(body)
    except msgspec.DecodeError:
        return None
    ttl = update.ttl
    if not (ttl > 0 and math.isfinite(ttl)) or len(update.endpoints) > _MAX_ENDPOINTS:
        return None
    try:
        data = None if update.data is None else decode_b64(update.data)
        endpoints = [decode_b64(e) for e in update.endpoints]
    except ValueError:
        return None
    return data, endpoints, ttl


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the body already read, then whatever the client sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", b"%d" % len(body)),
                *_HEADERS_JSON,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, max_bytes: int, *, close: bool = True) -> None:
    message = f"request body is larger than {max_bytes} bytes"
    error = {"error": {"code": "payload_too_large", "message": message}}
    body = json.dumps(error, separators=(",", ":")).encode()
    # A declared size over the cap is refused before reading: the unread body ends the connection.
    extra: list[tuple[bytes, bytes]] = [(b"connection", b"close")] if close else []
    await _respond(send, 413, body, extra)

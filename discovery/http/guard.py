"""Connection-level limits for the HTTP listener, which may face the internet without a proxy.

uvicorn holds a connection that never sends a byte forever, takes headers of any size, and
queues pipelined requests without bound; a few hundred sockets from one address used to take
the service down for everyone. Each connection here is refused at once past a cap (per client
address, and in total), must deliver its headers and keep its body moving within a deadline,
and may queue only a few pipelined requests. A refusal is an immediate response and a close,
never a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from ipaddress import ip_address

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from discovery.core.admission import client_key


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    per_client: int = 256  # 0: no per-address cap (behind a proxy every client is the proxy)
    total: int = 0  # 0: no total cap
    header_timeout: float = 10.0  # from connect (or the end of a response) to the last header
    body_timeout: float = 10.0  # longest silence while a request body is arriving
    max_header_bytes: int = 16 * 1024
    max_pipeline: int = 16


def _response(status: str) -> bytes:
    body = f'{{"error":{{"code":"connection_refused","message":"{status}"}}}}'.encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_BUSY = _response("503 Service Unavailable")
_TOO_MANY = _response("429 Too Many Requests")
_HEADERS_TOO_LARGE = _response("431 Request Header Fields Too Large")


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits`; its counters are this listener's own."""
    open_by_client: dict[Hashable, int] = {}
    total = [0]

    class GuardedProtocol(HttpToolsProtocol):
        _key: Hashable | None = None
        _counted = False
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._key = _client(self.client)
            if limits.total and total[0] >= limits.total:
                self._refuse(_BUSY)
                return
            if limits.per_client and self._key is not None:
                if open_by_client.get(self._key, 0) >= limits.per_client:
                    self._refuse(_TOO_MANY)
                    return
                open_by_client[self._key] = open_by_client.get(self._key, 0) + 1
            total[0] += 1
            self._counted = True
            self._arm(limits.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted:
                self._counted = False
                total[0] -= 1
                if limits.per_client and self._key is not None:
                    left = open_by_client[self._key] - 1
                    if left:
                        open_by_client[self._key] = left
                    else:
                        del open_by_client[self._key]
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            if self._deadline is None:
                self._arm(limits.header_timeout)

        def on_url(self, url: bytes) -> None:
            self._count_header(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_header(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self.transport.is_closing():
                return  # refused mid-parse: start no request on a closed connection
            super().on_headers_complete()
            if len(self.pipeline) > limits.max_pipeline:
                # A client that pipelines without reading answers: it gets no more of them.
                self.transport.close()
                return
            self._arm(limits.body_timeout)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm(limits.body_timeout)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The keep-alive timeout now covers the idle wait for the next request.
            self._disarm()

        def _count_header(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > limits.max_header_bytes and not self.transport.is_closing():
                self._refuse(_HEADERS_TOO_LARGE)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def _refuse(self, response: bytes) -> None:
            self._disarm()
            self.transport.write(response)
            self.transport.close()

    return GuardedProtocol


def _client(address: tuple[str, int] | None) -> Hashable | None:
    if address is None:
        return None
    try:
        return client_key(ip_address(address[0]))
    except ValueError:
        return None

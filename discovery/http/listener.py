"""An ASGI app served by uvicorn on a socket the runtime has already bound."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from discovery.http.guard import ConnectionLimits, guarded_protocol


class _Server(uvicorn.Server):
    # Signals are handled once for the whole process, by the runtime.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpListener:
    """One uvicorn server on one bound socket; `serve()` runs until `stop()` is called."""

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        *,
        tls_cert: str = "",
        tls_key: str = "",
        graceful_seconds: int = 5,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.socket = sock
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Accepted sockets inherit it. asyncio sets it only on sockets created with
            # IPPROTO_TCP, which ours (bound at startup, proto 0) are not: without it, Nagle's
            # algorithm holds a response's second write (its body) until the client's delayed
            # ACK, 40 ms later, and every request takes at least that long.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tls = (tls_cert, tls_key) if tls_cert and tls_key else None
        config = uvicorn.Config(
            app,
            lifespan="off",
            http=guarded_protocol(limits or ConnectionLimits()),
            log_config=None,
            access_log=False,
            server_header=False,
            # Proxy headers are trusted only as settings say (core/clientip.py), not by uvicorn.
            proxy_headers=False,
            ssl_certfile=tls_cert or None,
            ssl_keyfile=tls_key or None,
            timeout_graceful_shutdown=graceful_seconds,
        )
        self._server = _Server(config)

    @property
    def port(self) -> int:
        port: int = self.socket.getsockname()[1]
        return port

    async def serve(self) -> None:
        """Serve until `stop()`; open requests get the graceful period to finish."""
        await self._server.serve(sockets=[self.socket])

    async def started(self) -> ssl.SSLContext | None:
        """Wait until the server accepts connections; returns its TLS context, if any."""
        while not self._server.started:
            await asyncio.sleep(0.02)
        return self._server.config.ssl if self._tls is not None else None

    def stop(self) -> None:
        """Stop accepting and finish open requests (within the graceful period)."""
        self._server.should_exit = True

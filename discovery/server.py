"""The process: one core, served over HTTP, gRPC and a metrics listener in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator
from typing import Literal

import uvicorn
from prometheus_client import make_asgi_app

from discovery.http.app import create_app
from discovery.http.tls import reload_on_change
from discovery.runtime import Runtime
from discovery.settings import Settings, parse_addr

log = logging.getLogger("discovery")


class _Server(uvicorn.Server):
    # Signals are handled once for all listeners, in serve() below.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn(
    app: object,
    addr: str,
    settings: Settings,
    *,
    tls: bool,
    lifespan: Literal["on", "off"] = "on",
) -> _Server:
    host, port = parse_addr(addr)
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host or "0.0.0.0",
        port=port or 0,
        lifespan=lifespan,
        log_config=None,
        access_log=False,
        server_header=False,
        ssl_certfile=settings.tls_cert if tls and settings.tls_cert else None,
        ssl_keyfile=settings.tls_key if tls and settings.tls_key else None,
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


async def _started(server: _Server) -> None:
    while not server.started and not server.should_exit:
        await asyncio.sleep(0.05)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly (final snapshot included)."""
    runtime = Runtime(settings)
    service = await runtime.start()
    servers: list[_Server] = []
    grpc_server = None
    try:
        app = create_app(settings, service=service)
        servers.append(_uvicorn(app, settings.http_addr, settings, tls=True))
        if settings.metrics_addr:
            metrics_app = make_asgi_app(service.metrics.registry)
            servers.append(
                _uvicorn(metrics_app, settings.metrics_addr, settings, tls=False, lifespan="off")
            )
        if settings.grpc_addr:
            from discovery.grpc.server import start_grpc_server

            grpc_server = await start_grpc_server(service, settings)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        reloader = None
        if settings.tls_cert and settings.tls_key:
            await _started(servers[0])
            context = servers[0].config.ssl
            if context is not None:
                reloader = asyncio.create_task(
                    reload_on_change(context, settings.tls_cert, settings.tls_key)
                )
        log.info(
            "service started",
            extra={
                "http": settings.http_addr,
                "grpc": settings.grpc_addr,
                "metrics": settings.metrics_addr,
                "storage": settings.storage.split("://", 1)[0],
            },
        )
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        # End watch streams first, or the HTTP server would wait out its grace period on
        # them; clients resume from their last revision on another replica or after restart.
        service.hub.close_all()
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        stopped.cancel()
        if reloader is not None:
            reloader.cancel()
        failed = [t for t in done if t is not stopped and t.exception() is not None]
        if failed or any(not s.started for s in servers):
            raise SystemExit("a listener failed to start (is the port in use?)")
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=2.0)
        await runtime.stop()
        log.info("service stopped")

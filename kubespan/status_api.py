"""The agent's local status API: JSON over HTTP on a unix socket in the state dir.

A unix socket (mode 0600, in a 0700 dir) instead of a TCP port: only root on this machine can
read peer keys and endpoints or make the node leave, and there is no port to collide with.
`curl --unix-socket /var/lib/kubespan/kubespan.sock http://kubespan/v1/status` works too.

    GET  /v1/status    {self, peers, members, sessions}
    GET  /v1/self | /v1/peers | /v1/members | /v1/sessions
    GET  /v1/mesh      every node's view of its peers: {nodes, links} (kubespan.mesh_health)
    POST /v1/leave     delete our record everywhere, remove link/rules/nft, stop the agent

Served by uvicorn on a socket we bind ourselves, called with httpx's unix-socket transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE = 5.0
"""Seconds close() lets in-flight requests (a leave) finish before cutting them off."""


class StatusSource(Protocol):
    def status(self) -> dict[str, object]: ...
    def self_status(self) -> dict[str, object]: ...
    def peers_status(self) -> list[dict[str, object]]: ...
    def members_status(self) -> list[dict[str, object]]: ...
    def mesh_status(self) -> dict[str, object]: ...
    async def leave(self) -> dict[str, object]: ...


class StatusError(Exception):
    """The status socket cannot be served or reached; the message says why."""


class AgentUnavailable(StatusError):
    """No agent answers on the socket (none running, or a stale socket file)."""


class _Json(JSONResponse):
    # Indented: the same documents are read by people through curl.
    def render(self, content: Any) -> bytes:
        return json.dumps(content, indent=2).encode() + b"\n"


def _error(code: str, message: str, status: int) -> Response:
    return _Json({"error": {"code": code, "message": message}}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        return _error("method_not_allowed", f"{request.method} {path}", 405)
    if exc.status_code == 404:
        return _error("not_found", f"no such resource {path}", 404)
    return _error("bad_request", exc.detail, exc.status_code)


def _app(source: StatusSource) -> Starlette:
    def get(read: Callable[[], object]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return _Json(read())

        return endpoint

    async def leave(request: Request) -> Response:
        return _Json(await source.leave())

    routes = [
        Route("/v1/status", get(source.status), methods=["GET"]),
        Route("/v1/self", get(source.self_status), methods=["GET"]),
        Route("/v1/peers", get(source.peers_status), methods=["GET"]),
        Route("/v1/members", get(source.members_status), methods=["GET"]),
        Route("/v1/mesh", get(source.mesh_status), methods=["GET"]),
        Route("/v1/sessions", get(lambda: source.status()["sessions"]), methods=["GET"]),
        Route("/v1/leave", leave, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The agent owns SIGTERM and SIGINT (they stop it, and it then closes us); uvicorn
        # would otherwise replace its handlers while serving.
        yield


class StatusServer:
    """Serves a StatusSource on `path` until close()."""

    def __init__(self, path: Path, source: StatusSource) -> None:
        self.path = path
        config = uvicorn.Config(
            _app(source),
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            date_header=False,
            server_header=False,
            timeout_graceful_shutdown=int(_SHUTDOWN_GRACE),
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the socket (0600); raises StatusError if another agent already serves it."""
        if self.path.exists() or self.path.is_symlink():
            try:
                _, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError:
                self.path.unlink()  # left behind by an agent that was killed
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                raise StatusError(f"{self.path}: another kubespan agent is running")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            # Private before listen(): until then nobody can connect. The state dir is 0700
            # already; this keeps the socket private if it is not.
            os.chmod(self.path, 0o600)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise StatusError(f"{self.path}: cannot serve the status API: {exc}") from None
        sock.setblocking(False)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.005)
        if self._task.done():
            self._task.result()  # re-raise what stopped it
        log.info("status API on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, let in-flight requests (a leave) answer, remove the socket."""
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.wait([self._task], timeout=_SHUTDOWN_GRACE + 1)
            self._task = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _reach(socket_path: Path, timeout: float) -> None:
    """Raise AgentUnavailable unless something listens on the socket.

    Our own connect first, because httpcore 1.0 leaves the socket of a failed unix connect
    open (a ResourceWarning later, an error under -W error); the probe also turns the
    common "no agent" cases into one clear message.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnavailable(f"no agent answers on {socket_path}: {exc.strerror}") from None
        except OSError as exc:
            raise StatusError(f"{socket_path}: {exc}") from None


def request(socket_path: Path, method: str, path: str, *, timeout: float = 30.0) -> Any:
    """Call the agent's API; raises AgentUnavailable when no agent answers on the socket."""
    _reach(socket_path, timeout)
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.request(method, f"http://kubespan{path}")
    except httpx.HTTPError as exc:
        raise StatusError(f"{socket_path}: {exc}") from None
    if not response.is_success:
        text = response.text.strip()
        raise StatusError(f"{method} {path}: HTTP {response.status_code}: {text}")
    try:
        return response.json()
    except ValueError:
        raise StatusError(f"{method} {path}: the agent did not answer JSON") from None

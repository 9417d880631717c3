"""The agent's local status API: JSON over HTTP/1.1 on a unix socket in the state dir.

A unix socket (mode 0600, in a 0700 dir) instead of a TCP port: only root on this machine can
read peer keys and endpoints or make the node leave, and there is no port to collide with.
`curl --unix-socket /var/lib/kubespan/kubespan.sock http://kubespan/v1/status` works too.

    GET  /v1/status    {self, peers, members, sessions}
    GET  /v1/self | /v1/peers | /v1/members | /v1/sessions
    POST /v1/leave     delete our record everywhere, remove link/rules/nft, stop the agent
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

_MAX_HEADER_LINES = 64
_READ_TIMEOUT = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class StatusSource(Protocol):
    def status(self) -> dict[str, object]: ...
    def self_status(self) -> dict[str, object]: ...
    def peers_status(self) -> list[dict[str, object]]: ...
    def members_status(self) -> list[dict[str, object]]: ...
    async def leave(self) -> dict[str, object]: ...


class StatusError(Exception):
    """The status socket cannot be served or reached; the message says why."""


class AgentUnavailable(StatusError):
    """No agent answers on the socket (none running, or a stale socket file)."""


class StatusServer:
    """Serves a StatusSource on `path` until close()."""

    def __init__(self, path: Path, source: StatusSource) -> None:
        self.path = path
        self._source = source
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[Any]] = set()
        sessions: Callable[[], object] = lambda: source.status()["sessions"]  # noqa: E731
        self._gets: Mapping[str, Callable[[], object]] = {
            "/v1/status": source.status,
            "/v1/self": source.self_status,
            "/v1/peers": source.peers_status,
            "/v1/members": source.members_status,
            "/v1/sessions": sessions,
        }
        self._posts: Mapping[str, Callable[[], Awaitable[object]]] = {"/v1/leave": source.leave}

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
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        # The state dir is 0700 already; this keeps the socket private if it is not.
        os.chmod(self.path, 0o600)
        log.info("status API on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, let in-flight requests (a leave) answer, remove the socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        current = asyncio.current_task()
        pending = [t for t in self._active if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=_READ_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        try:
            code, body = await self._respond(reader)
            payload = json.dumps(body, indent=2).encode() + b"\n"
            head = (
                f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self._active.discard(task)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, object]:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                line = await reader.readline()
                method, target, _ = line.decode("latin-1").split(" ", 2)
                length = 0
                for _ in range(_MAX_HEADER_LINES):
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(min(length, 65536))
        except (ValueError, TimeoutError):
            return 400, _error("bad_request", "malformed HTTP request")
        path = target.split("?", 1)[0]
        if method == "GET" and path in self._gets:
            return 200, self._gets[path]()
        if method == "POST" and path in self._posts:
            return 200, await self._posts[path]()
        if path in self._gets or path in self._posts:
            return 405, _error("method_not_allowed", f"{method} {path}")
        return 404, _error("not_found", f"no such resource {path}")


def _error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("kubespan", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def request(socket_path: Path, method: str, path: str, *, timeout: float = 30.0) -> Any:
    """Call the agent's API; raises AgentUnavailable when no agent answers on the socket."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        try:
            connection.request(method, path, body=b"" if method == "POST" else None)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnavailable(f"no agent answers on {socket_path}: {exc.strerror}") from None
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise StatusError(f"{socket_path}: {exc}") from None
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        text = body.decode(errors="replace").strip()
        raise StatusError(f"{method} {path}: HTTP {response.status}: {text}")
    try:
        return json.loads(body)
    except ValueError:
        raise StatusError(f"{method} {path}: the agent did not answer JSON") from None


# -- rendering for the CLI ---------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]  # fmt: skip
    return "\n".join(lines)


def _bytes(value: object) -> str:
    size = float(value) if isinstance(value, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns


def _ago(value: object, now: datetime) -> str:
    if not isinstance(value, str):
        return "never"
    seconds = int((now - datetime.fromisoformat(value)).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def format_status(status: Mapping[str, Any], now: datetime | None = None) -> str:
    """The `kubespan status` table (peers), then this node and its discovery sessions."""
    now = now or datetime.now(UTC)
    rows = [
        [
            str(p["label"]),
            str(p["public_key"]),
            str(p["endpoint"] or "-"),
            str(p["state"]),
            _ago(p["last_handshake"], now),
            _bytes(p["rx"]),
            _bytes(p["tx"]),
        ]
        for p in sorted(status["peers"], key=lambda p: str(p["label"]))
    ]
    header = ["LABEL", "PUBLIC-KEY", "ENDPOINT", "STATE", "HANDSHAKE", "RX", "TX"]
    me = status["self"]
    lines = [
        _table(header, rows),
        "",
        f"node {me['nodename']} ({me['node_id']}) {me['address']} key {me['public_key']}"
        f" on {me['interface']} ({me['backend']})",
    ]
    for s in status["sessions"]:
        state = "connected" if s["connected"] else f"disconnected ({s['last_error'] or '-'})"
        lines.append(
            f"discovery {s['endpoint']}: {state}, {s['affiliates']} affiliates, "
            f"{s['undecryptable']} undecryptable"
        )
    return "\n".join(lines)


def format_members(members: Sequence[Mapping[str, Any]]) -> str:
    """The `kubespan members` table."""
    header = ["NODENAME", "NODE-ID", "HOSTNAME", "MACHINE-TYPE", "OS", "ADDRESSES"]
    rows = [
        [
            str(m["nodename"]),
            str(m["node_id"]),
            str(m["hostname"]),
            str(m["machine_type"]),
            str(m["operating_system"]),
            ",".join(m["addresses"]) or "-",
        ]
        for m in members
    ]
    return _table(header, rows)

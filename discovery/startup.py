"""Start-up checks that turn a bad environment into one clear line instead of a traceback."""

from __future__ import annotations

import os
import socket
import ssl

from discovery.settings import parse_addr


class StartupError(Exception):
    """The process cannot start as configured; the message says what to fix."""


def bind(addr: str, what: str, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on `addr` ("HOST:PORT", ":PORT"); raises StartupError.

    Binding here, before any server starts, makes a taken port an error we report, rather
    than something a server library handles by exiting the process from inside a task.
    """
    host, port = parse_addr(addr)
    if port is None:
        raise StartupError(f"{what} address must be HOST:PORT or :PORT, got {addr!r}")
    host = host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {addr} for {what}: {reason}") from None


def check_tls_pair(cert: str, key: str) -> None:
    """Raise StartupError unless `cert` and `key` are readable and belong together."""
    if bool(cert) != bool(key):
        raise StartupError("--tls-cert and --tls-key must be given together")
    if not cert:
        return
    for path in (cert, key):
        if not os.path.exists(path):
            raise StartupError(f"TLS: {path}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:
        raise StartupError(f"TLS: {exc.filename or cert}: {exc.strerror or exc}") from None
    except ssl.SSLError as exc:
        raise StartupError(f"TLS: {cert} / {key}: {exc.reason or exc}") from None


def hold(addr: str, what: str) -> socket.socket:
    """Probe `addr` as `bind` does, then keep it bound, not listening, with SO_REUSEPORT.

    For a port the workers bind themselves (grpc binds its own sockets, with SO_REUSEPORT):
    the probe turns a taken port into one line before any worker starts, and the held socket
    keeps anyone else off the port while no worker is listening (between restarts). Only
    sockets that also set SO_REUSEPORT, under the same user, can bind beside it; a held,
    non-listening socket is never handed a connection.
    """
    bind(addr, what).close()
    host, port = parse_addr(addr)
    assert port is not None  # bind() above has checked it
    host = host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {addr} for {what}: {reason}") from None
    return sock

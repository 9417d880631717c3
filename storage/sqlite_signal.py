"""The change signal between the processes sharing one SQLite file: a datagram per commit.

Each log binds a unix datagram socket in a directory beside the database
(`<db>-notify/<pid>-<n>-<token>.sock`). After each commit it sends one byte to every other
socket there; a log that receives one wakes its waiters, which re-read the head from the
database. The datagram carries no data: it only says "look again", so a lost or coalesced one
costs nothing but latency, and the backend's slower polling stays the fallback.

A socket whose owner died without removing it refuses datagrams (ECONNREFUSED); the first sender
to notice removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import secrets
import socket
from collections.abc import Callable

_SUFFIX = ".sock"
# sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
_MAX_ADDRESS = 107
_numbers = itertools.count(1)


def signal_dir(database: str) -> str:
    """The directory where the logs sharing the database at `database` bind their sockets."""
    return f"{database}-notify"


class ChangeSignal:
    """This log's socket, and the datagrams it sends to the others; open with `open()`."""

    def __init__(self, directory: str, dir_fd: int, sock: socket.socket, name: str) -> None:
        self._dir = directory
        self._dir_fd = dir_fd
        self._sock = sock
        self._name = name
        self._peers: list[str] = []
        self._closed = False

    @classmethod
    def open(cls, database: str, on_signal: Callable[[], None]) -> ChangeSignal:
        """Bind this log's socket and call `on_signal` on the running loop for each burst of
        datagrams received. Raises OSError (the caller then relies on polling alone)."""
        directory = signal_dir(database)
        os.makedirs(directory, exist_ok=True)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # The pid says whose it is; the token keeps a reused pid from meeting a stale name.
            name = f"{os.getpid()}-{next(_numbers)}-{secrets.token_hex(4)}{_SUFFIX}"
            sock.bind(_address(directory, dir_fd, name))
            signal = cls(directory, dir_fd, sock, name)
            asyncio.get_running_loop().add_reader(sock.fileno(), signal._drain, on_signal)
        except BaseException:
            sock.close()
            os.close(dir_fd)
            raise
        return signal

    def _drain(self, on_signal: Callable[[], None]) -> None:
        # However many datagrams queued up, one wake-up answers them all.
        with contextlib.suppress(OSError):
            while self._sock.recv(16):
                pass
        on_signal()

    def notify(self) -> None:
        """Send one byte to every other log's socket; never raises, never blocks."""
        if self._closed:
            return
        try:
            # Listed on every call: a log opened since the last commit must hear the next one.
            names = [n for n in os.listdir(self._dir_fd) if n.endswith(_SUFFIX)]
        except OSError:
            return
        for name in names:
            if name != self._name:
                self._send(name)

    def _send(self, name: str) -> None:
        try:
            self._sock.sendto(b"!", _address(self._dir, self._dir_fd, name))
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                # Nobody is bound there any more: its owner died without cleaning up.
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=self._dir_fd)
            # EAGAIN (its queue is full, so a wake-up is pending anyway), ENOENT (just closed)
            # and the like need nothing.

    def close(self) -> None:
        """Stop listening and remove this log's socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        with contextlib.suppress(OSError):
            os.unlink(self._name, dir_fd=self._dir_fd)
        self._sock.close()
        os.close(self._dir_fd)


def _address(directory: str, dir_fd: int, name: str) -> str:
    path = os.path.join(directory, name)
    if len(os.fsencode(path)) <= _MAX_ADDRESS:
        return path
    # A deep database path does not fit in a socket address; Linux resolves this short alias
    # of the directory we hold open instead.
    return f"/proc/self/fd/{dir_fd}/{name}"

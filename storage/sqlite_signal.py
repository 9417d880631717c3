"""The change signal between the processes sharing one SQLite file: a datagram per commit.

Each log binds a unix datagram socket in a directory beside the database
(`<db>-notify/<pid>-<n>-<token>.sock`). After each commit it sends the committed head (8 bytes)
to every other socket there, as PostgreSQL's NOTIFY carries it; a log that receives one
advances its head and so wakes its waiters, with no database round trip. Commits are
serialized and the datagram leaves only after its commit, so every revision up to that head is
readable by then. A lost datagram costs only latency: the backend's slower polling stays the
fallback.

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
import struct
from collections.abc import Callable

_SUFFIX = ".sock"
# sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
_MAX_ADDRESS = 107
_numbers = itertools.count(1)
_HEAD = struct.Struct("<Q")
# Datagrams a unix socket queues before senders get EAGAIN (net.unix.max_dgram_qlen, 10 by
# default): a burst this long may have lost the newest head.
_QUEUE_SLOTS = 10


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
        self._closed = False

    @classmethod
    def open(cls, database: str, on_head: Callable[[int, bool], None]) -> ChangeSignal:
        """Bind this log's socket; for each burst of datagrams, call `on_head` on the running
        loop with the newest head received and whether a newer one may have been dropped (the
        queue was full). Raises OSError (the caller then relies on polling alone)."""
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
            asyncio.get_running_loop().add_reader(sock.fileno(), signal._drain, on_head)
        except BaseException:
            sock.close()
            os.close(dir_fd)
            raise
        return signal

    def _drain(self, on_head: Callable[[int, bool], None]) -> None:
        # However many datagrams queued up, one call answers them all.
        head = received = 0
        with contextlib.suppress(OSError):
            while True:
                data = self._sock.recv(64)
                received += 1
                if len(data) == _HEAD.size:  # anything else is not ours: ignored
                    head = max(head, _HEAD.unpack(data)[0])
        on_head(head, received >= _QUEUE_SLOTS)

    def notify(self, head: int) -> None:
        """Send `head` to every other log's socket; never raises, never blocks."""
        if self._closed:
            return
        payload = _HEAD.pack(head)
        try:
            # Listed on every call: a log opened since the last commit must hear the next one.
            names = [n for n in os.listdir(self._dir_fd) if n.endswith(_SUFFIX)]
        except OSError:
            return
        for name in names:
            if name != self._name:
                self._send(name, payload)

    def _send(self, name: str, payload: bytes) -> None:
        try:
            self._sock.sendto(payload, _address(self._dir, self._dir_fd, name))
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                # Nobody is bound there any more: its owner died without cleaning up.
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=self._dir_fd)
            # EAGAIN: its queue is full, and it will know to read the head itself when it
            # drains it. ENOENT (just closed) and the like need nothing.

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

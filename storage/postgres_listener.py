"""The PostgreSQL backend's LISTEN connection, which reports the heads other replicas commit.

It comes back by itself when the connection drops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from storage.errors import StorageError
from storage.postgres_driver import PING_TIMEOUT, close, connect, mapped, terminate
from storage.postgres_schema import CHANNEL
from storage.waiters import HeadWatch

# How often an idle LISTEN connection is pinged: a peer that vanished without closing the socket
# (host crash, partition) is otherwise only noticed by the kernel after many minutes.
_PING_INTERVAL = 10.0
_MAX_BACKOFF = 5.0


class Listener:
    """Feeds `watch` from NOTIFY; open with `await Listener.open(url, watch)`."""

    def __init__(self, url: str, watch: HeadWatch) -> None:
        self._url = url
        self._watch = watch
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, watch: HeadWatch) -> Listener:
        """Connect and start listening; raises StorageUnavailable."""
        listener = cls(url, watch)
        await listener._connect()
        listener._keeper = asyncio.create_task(listener._keep_listening())
        return listener

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._watch.advance(int(payload))

    async def _connect(self) -> None:
        conn = await connect(self._url)
        try:
            with mapped():
                await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            terminate(conn)
            raise
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self._conn, self._lost = conn, lost

    async def _keep_listening(self) -> None:
        # Runs until aclose() cancels it. Notifications sent while we are disconnected are gone for
        # good, so each reconnect wakes the waiters to re-read the head themselves.
        delay = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), _PING_INTERVAL)
            if not self._lost.is_set():
                try:
                    with mapped():
                        await asyncio.wait_for(self._conn.fetchval("SELECT 1"), PING_TIMEOUT)
                    continue
                except (StorageError, TimeoutError):
                    terminate(self._conn)
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except StorageError:
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            delay = 0.1
            self._watch.wake()

    async def aclose(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await close(self._conn)

"""What a client contract test runs against: a served service, its options, small helpers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Any, cast

from discovery.client import DiscoveryClient, WatchEvent
from membership.limits import CLUSTER_AFFILIATES_MAX, IP_RATE_BURST
from membership.model import Affiliate

TTL = timedelta(minutes=5)
# Talos cluster ids are standard base64; '%' checks that ids are escaped, not passed through.
CLUSTER = "q8/+Zx==%2F"
AFFILIATE = "node/1+2="


@dataclass(frozen=True, kw_only=True)
class Options:
    """What a test needs of the service; the defaults keep every limit out of the way."""

    redirect: str = ""
    disable_client_ip: bool = False
    cluster_affiliates_max: int = CLUSTER_AFFILIATES_MAX
    # One call per client, then refused for a long while.
    rate_limited: bool = False

    def settings(self) -> dict[str, Any]:
        """The same, as keyword arguments of discovery.settings.Settings."""
        return {
            "storage": "memory://",
            "redirect_endpoint": self.redirect,
            "disable_client_ip": self.disable_client_ip,
            "cluster_affiliates_max": self.cluster_affiliates_max,
            "rate_limit": 0.001 if self.rate_limited else 0,
            "rate_burst": 1 if self.rate_limited else IP_RATE_BURST,
        }


@dataclass
class Served:
    """A running service as a contract test sees it."""

    # What hello reports for this test's clients.
    client_ip: IPv4Address | IPv6Address
    connect: Callable[[], DiscoveryClient]
    # (revision, affiliates) as the service itself holds them, past every client.
    stored: Callable[[str], tuple[int, list[Affiliate]]]
    # The service goes away: open watches break, later calls fail. Idempotent.
    stop: Callable[[], Coroutine[Any, Any, None]]
    _clients: list[DiscoveryClient] = field(default_factory=list)

    def client(self) -> DiscoveryClient:
        """A new client of this service, closed when the test ends."""
        self._clients.append(self.connect())
        return self._clients[-1]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


Serve = Callable[[Options], AbstractAsyncContextManager[Served]]


class Stoppable:
    """An async context manager entered now and left at `stop()` or at the end, once."""

    def __init__(self, manager: AbstractAsyncContextManager[Any]) -> None:
        self._manager = manager
        self._stop: asyncio.Task[Any] | None = None

    async def start(self) -> Any:
        return await self._manager.__aenter__()

    async def stop(self) -> None:
        if self._stop is None:
            self._stop = asyncio.create_task(self._manager.__aexit__(None, None, None))
        await asyncio.shield(self._stop)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def take(stream: AsyncIterator[WatchEvent], n: int = 1) -> list[WatchEvent]:
    async with asyncio.timeout(5.0):
        return [await anext(stream) for _ in range(n)]


def watching(
    client: DiscoveryClient, since: int | None = None
) -> contextlib.aclosing[AsyncGenerator[WatchEvent, None]]:
    """A watch of CLUSTER that is closed on exit; every implementation is an async generator."""
    return contextlib.aclosing(
        cast(AsyncGenerator[WatchEvent, None], client.watch(CLUSTER, since=since))
    )


def unrevised(event: WatchEvent) -> WatchEvent:
    return dataclasses.replace(event, revision=None)

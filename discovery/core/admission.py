"""Admission of requests and streams: the per-client token bucket and the stream caps.

Clients are counted by IPv4 address, or by IPv6 /64: a subscriber holds a whole /64, so a
bucket per address would hand one attacker 2**64 budgets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from discovery.core.clock import Monotonic
from discovery.core.errors import RateLimited
from discovery.core.metrics import Metrics
from discovery.core.ratelimit import RateLimiter
from discovery.core.streams import StreamSlots
from discovery.core.values import CoreOptions

IPAddress = IPv4Address | IPv6Address

# Longest a call may wait for a rate-limit token: bounds the reservations one client holds.
MAX_RATE_WAIT = 60.0
# Affiliates (or replayed events) one rate-limit token pays for in an answer.
ITEMS_PER_TOKEN = 100


def client_key(ip: IPAddress) -> Hashable:
    """Who a client is for limits: its IPv4 address, or its IPv6 /64."""
    return IPv6Network((int(ip) >> 64 << 64, 64)) if ip.version == 6 else ip


class Admission:
    def __init__(self, options: CoreOptions, metrics: Metrics, monotonic: Monotonic) -> None:
        self._limiter = RateLimiter(options.rate_limit, options.rate_burst)
        self._streams = StreamSlots(options.watches_per_client, options.watches)
        self._metrics = metrics
        self._monotonic = monotonic

    async def admit(self, client_ip: IPAddress | None, *, wait_up_to: float | None) -> None:
        """Take a token, waiting up to `wait_up_to` seconds for one (None: up to a minute);
        raises RateLimited. A waiter sleeps once, for a slot reserved for it."""
        if client_ip is None or self._limiter.rate <= 0:
            return
        key = client_key(client_ip)
        limit = MAX_RATE_WAIT if wait_up_to is None else min(wait_up_to, MAX_RATE_WAIT)
        wait = self._limiter.reserve(key, self._monotonic(), limit)
        if wait is None:
            self._metrics.rate_limited.inc()
            retry = self._limiter.acquire(key, self._monotonic())
            if wait_up_to == 0:
                raise RateLimited("rate limit exceeded", retry_after=retry)
            raise RateLimited("rate limit exceeds request timeout", retry_after=retry)
        if wait > 0:
            await asyncio.sleep(wait)

    def charge(self, client_ip: IPAddress | None, items: int) -> None:
        """Charge a client for an answer of `items` affiliates or events beyond the first
        hundred (one token per hundred): a snapshot of a full cluster costs what it weighs."""
        if client_ip is not None and items > ITEMS_PER_TOKEN:
            tokens = (items - ITEMS_PER_TOKEN) / ITEMS_PER_TOKEN
            self._limiter.charge(client_key(client_ip), self._monotonic(), tokens)

    def open_stream(self, client_ip: IPAddress | None) -> Hashable | None:
        """Count an open watch; raises RateLimited past a cap. Returns the key to close it."""
        client = client_key(client_ip) if client_ip is not None else None
        self._streams.take(client)
        return client

    def close_stream(self, client: Hashable | None) -> None:
        self._streams.give_back(client)

    def forget_idle_clients(self) -> int:
        """Drop the rate-limit state of clients that went quiet; returns how many."""
        return self._limiter.collect_garbage(self._monotonic())

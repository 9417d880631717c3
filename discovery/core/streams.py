"""Caps on open watch streams, per client and in total, shared by both front ends.

A watch costs a descriptor and a little memory for as long as it is open, and opening one
costs a single rate-limit token, so the token bucket alone lets one address hold streams
until the process runs out of descriptors. Clients are counted like the rate limit counts
them (an IPv6 /64 is one client).
"""

from __future__ import annotations

from collections.abc import Hashable

from discovery.core.errors import RateLimited


class StreamSlots:
    def __init__(self, per_client: int, total: int) -> None:
        self._per_client = per_client
        self._total = total
        self._open: dict[Hashable, int] = {}
        self._count = 0

    def take(self, client: Hashable | None) -> None:
        """Count one more open stream of `client` (None: not counted per client); raises
        RateLimited past either cap, counting nothing."""
        if self._total and self._count >= self._total:
            raise RateLimited("the service has too many open watches, try again later", 30.0)
        if client is not None and self._per_client:
            held = self._open.get(client, 0)
            if held >= self._per_client:
                raise RateLimited("too many open watches from this address", 30.0)
            self._open[client] = held + 1
        self._count += 1

    def give_back(self, client: Hashable | None) -> None:
        """The stream of `client` ended. Call once per successful take()."""
        self._count -= 1
        if client is not None and self._per_client:
            held = self._open[client] - 1
            if held:
                self._open[client] = held
            else:
                del self._open[client]

    def __len__(self) -> int:
        return self._count

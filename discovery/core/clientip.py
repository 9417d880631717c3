"""Which IP a request comes from, honouring proxy headers only when told to trust them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

IPAddress = IPv4Address | IPv6Address


# Every request parses its peer's address, and the same few thousand addresses come back all
# the time; bounded, so a stream of new ones only evicts.
@functools.lru_cache(maxsize=4096)
def _parse(text: str | None) -> IPAddress | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    try:
        addr = ip_address(text)
    except ValueError:
        return None
    # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def resolve(
    peer: str | None,
    header: Callable[[str], str | None],
    *,
    trust_x_real_ip: bool,
    trust_x_forwarded_for: bool,
) -> IPAddress | None:
    """The client IP: X-Real-IP, then the first X-Forwarded-For entry (each only if trusted),
    then the transport peer. None when nothing parses (such clients are not rate limited)."""
    if trust_x_real_ip and (addr := _parse(header("x-real-ip"))) is not None:
        return addr
    if trust_x_forwarded_for:
        forwarded = header("x-forwarded-for")
        if forwarded and (addr := _parse(forwarded.split(",")[0])) is not None:
            return addr
    return _parse(peer)

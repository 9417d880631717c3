"""Nudge a peer through the tunnel: a down one comes back as soon as its path does, and a
quiet one proves it is alive before it would be judged down.

WireGuard only tries a handshake when it has something to send: a peer whose session died
with the path is retried at its next persistent keepalive (up to 25 s away) and then on a
5 s schedule that gives up after 90 s. One small datagram to the peer's mesh address
makes WireGuard initiate at once (it rate-limits initiations itself, one per 5 s), so a
peer whose path returns is up within seconds. The peer's kernel discards it (port 9) or
answers "port unreachable"; either way it proves the path.

A live peer answers any datagram: its kernel's ICMP reply comes straight back through the
tunnel, or, if a firewall drops it, WireGuard's passive keepalive follows within 10 s. So a
peer that missed a keepalive (or whose keepalives race ours) is heard from long before
`timing.peer_down`.
"""

from __future__ import annotations

import socket
from ipaddress import IPv6Address

DISCARD_PORT = 9


def udp_poke(address: IPv6Address) -> None:
    """Send one datagram to `address` through the mesh; never raises, never blocks."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"kubespan", (str(address), DISCARD_PORT))
    except OSError:
        pass  # no route yet, buffer full: the next pass tries again

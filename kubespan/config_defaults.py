"""The agent's default settings, each written once (Talos' values unless noted).

Kept apart from `kubespan.config` and free of imports beyond the standard library, so the pure
modules (`peer_state`, `plan`) can take their defaults from here without pulling in YAML or
pydantic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

DEFAULT_PORT = 51820
DEFAULT_MTU = 1420
# 1280 is the IPv6 minimum link MTU; 9000 covers jumbo frames.
MIN_MTU = 1280
MAX_MTU = 9000
DEFAULT_KEEPALIVE_SECONDS = 25
DEFAULT_FORCE_ROUTING = True

DEFAULT_MACHINE_TYPE: Final = "worker"

# Shorter than Talos' EndpointConnectionTimeout (15 s) and PeerDownInterval (275 s), because
# the agent reads WireGuard every second while a peer is not up (Talos: on its 30 s tick) and
# counts received traffic as well as handshakes:
# - a working endpoint handshakes within one round trip, and WireGuard retries an unanswered
#   initiation after 5 s (REKEY_TIMEOUT): 6 s is one retry, so a dead candidate costs <= 7 s;
# - a live peer's persistent keepalive (25 s) arrives at least every 25 s, and a peer quiet
#   for 30 s is probed through the tunnel (kubespan/poke.py), which a live peer answers at
#   once (ICMP) or within WireGuard's 10 s passive keepalive: 45 s survives a lost keepalive
#   and reports a vanished peer well within a minute. A mesh with keepalives off needs a
#   longer peer_down (handshakes alone come every 2 minutes at best): Talos' 275 s.
DEFAULT_ENDPOINT_TIMEOUT = timedelta(seconds=6)
DEFAULT_PEER_DOWN = timedelta(seconds=45)
PROBE_AFTER_KEEPALIVE = timedelta(seconds=5)
"""A peer quiet for its keepalive interval plus this is probed (see kubespan/poke.py)."""
DEFAULT_RECONCILE = timedelta(seconds=30)
# How often the agent reads the device (`wg show dump`, cheap): every second while any peer
# is not up (an endpoint being tried, a peer down), every few seconds once all are up.
OBSERVE_FAST = timedelta(seconds=1)
OBSERVE_SLOW = timedelta(seconds=3)
# The affiliate TTL asked of the discovery service; the refresh interval defaults to half of
# whatever TTL is configured, so it has no constant of its own.
DEFAULT_TTL = timedelta(minutes=30)

"""The agent's default settings, each written once (Talos' values unless noted).

Kept apart from `kubespan.config` and free of imports beyond the standard library, so the pure
modules (`peer_state`, `plan`) can take their defaults from here without pulling in YAML or
pydantic.
"""

from __future__ import annotations

from datetime import timedelta

DEFAULT_PORT = 51820
DEFAULT_MTU = 1420
# 1280 is the IPv6 minimum link MTU; 9000 covers jumbo frames.
MIN_MTU = 1280
MAX_MTU = 9000
DEFAULT_KEEPALIVE_SECONDS = 25
DEFAULT_FORCE_ROUTING = True

# Talos' EndpointConnectionTimeout and PeerDownInterval (180 + 5 + 90 s).
DEFAULT_ENDPOINT_TIMEOUT = timedelta(seconds=15)
DEFAULT_PEER_DOWN = timedelta(seconds=275)
DEFAULT_RECONCILE = timedelta(seconds=30)
# The affiliate TTL asked of the discovery service; the refresh interval defaults to half of
# whatever TTL is configured, so it has no constant of its own.
DEFAULT_TTL = timedelta(minutes=30)

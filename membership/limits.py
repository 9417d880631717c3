"""Every limit of the service, as named constants and one configurable bundle.

Values follow the Talos discovery service (pkg/limits/limits.go) so real Talos clients
see the same boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

CLUSTER_ID_MAX = 256
AFFILIATE_ID_MAX = 256
AFFILIATE_DATA_MAX = 2048
AFFILIATE_ENDPOINT_MAX = 32
AFFILIATE_ENDPOINTS_MAX = 64
CLUSTER_AFFILIATES_MAX = 1024
TTL_MAX = timedelta(minutes=30)

IP_RATE_PER_SECOND = 15.0
IP_RATE_BURST = 60

# Changes queued per watcher. Upstream drops a watcher after 32; ours falls back to reading
# the log instead, so a deeper queue only saves log reads for short bursts.
WATCH_BUFFER = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The limits one service instance enforces; defaults are the upstream values."""

    cluster_id_max: int = CLUSTER_ID_MAX
    affiliate_id_max: int = AFFILIATE_ID_MAX
    affiliate_data_max: int = AFFILIATE_DATA_MAX
    affiliate_endpoint_max: int = AFFILIATE_ENDPOINT_MAX
    affiliate_endpoints_max: int = AFFILIATE_ENDPOINTS_MAX
    cluster_affiliates_max: int = CLUSTER_AFFILIATES_MAX
    ttl_max: timedelta = TTL_MAX


DEFAULT_LIMITS = Limits()

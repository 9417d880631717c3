"""The values the application core hands to its front ends: options, status, results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from membership import limits as L
from membership.codec import decode_event
from membership.events import AffiliateUpdated, EndpointsExpired, Event
from membership.limits import DEFAULT_LIMITS, Limits
from membership.model import Affiliate
from storage.base import StoredEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreOptions:
    limits: Limits = DEFAULT_LIMITS
    watch_buffer: int = L.WATCH_BUFFER
    rate_limit: float = L.IP_RATE_PER_SECOND
    rate_burst: int = L.IP_RATE_BURST
    # 0 disables a cap. A NATed cluster's nodes share one address, hence the generous default.
    watches_per_client: int = L.CLUSTER_AFFILIATES_MAX
    watches: int = 0
    watch_lifetime: float = 3600.0
    affiliates_per_client: int = L.CLUSTER_AFFILIATES_MAX // 2
    clusters_per_client: int = 64
    redirect_endpoint: str = ""
    disable_client_ip: bool = False


@dataclass(frozen=True, slots=True)
class CoreStatus:
    """One reading of the core, for readiness, the landing page and the state gauges."""

    loaded: bool
    storage_ok: bool
    leader: bool
    revision: int
    clusters: int
    affiliates: int
    endpoints: int
    watchers: int
    storage_reason: str = ""

    @property
    def ready(self) -> bool:
        return self.loaded and self.storage_ok

    @property
    def reason(self) -> str:
        """Why the core is not ready ("" when it is)."""
        if not self.loaded:
            return "loading"
        return "" if self.storage_ok else self.storage_reason or "event log unavailable"


@dataclass(frozen=True, slots=True)
class HelloResult:
    client_ip: IPv4Address | IPv6Address | None
    redirect: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event of a cluster's history, with the affiliate it is about (when it names one)."""

    revision: int
    type: str
    recorded_at: datetime
    event: Event
    affiliate_id: str | None
    affiliate: Affiliate | None

    @classmethod
    def of(cls, record: StoredEvent) -> HistoryEntry:
        """Decode a stored event; raises CodecError when it is damaged."""
        event = decode_event(record.type, record.data)
        affiliate = (
            event.affiliate if isinstance(event, AffiliateUpdated | EndpointsExpired) else None
        )
        affiliate_id = getattr(event, "affiliate_id", None) or (affiliate.id if affiliate else None)
        return cls(record.revision, record.type, record.recorded_at, event, affiliate_id, affiliate)

"""Server-side value objects: opaque affiliates as the service stores them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

_EMPTY: Mapping[str, Affiliate] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One sealed endpoint blob with its own expiry; endpoints expire independently."""

    data: bytes
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Affiliate:
    """An affiliate as the service sees it: an id, sealed data, sealed endpoints, an expiry."""

    id: str
    data: bytes
    endpoints: tuple[Endpoint, ...]
    expires_at: datetime

    def endpoint_blobs(self) -> tuple[bytes, ...]:
        """The endpoint blobs in insertion order, without their expiries."""
        return tuple(e.data for e in self.endpoints)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The live affiliates of one cluster; never mutated, `apply` returns a new one."""

    id: str
    affiliates: Mapping[str, Affiliate] = field(default_factory=lambda: _EMPTY)
    # Global revision of the last event folded into this cluster (0 before any).
    revision: int = 0
    # Node keys the cluster revoked (membership.access refuses them for good).
    revoked: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRequest:
    """A create-or-update of one affiliate; `data=None` (or empty) leaves the data as it is."""

    affiliate_id: str
    data: bytes | None = None
    endpoints: tuple[bytes, ...] = ()
    ttl: timedelta

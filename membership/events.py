"""The facts the event log records, in the past tense.

Events that change what a watcher sees carry the affiliate's full resulting state, so a
watcher resuming from an old revision can be served straight from the log, without folding
the cluster from the beginning.

Events are msgspec Structs for the reasons given in membership/model.py: immutable, built in
C, never tracked by the cycle collector. Each event's field order is its stored form
(membership/codec.py): new fields go last, with a default.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

from membership.keys import node_affiliate_id
from membership.model import Affiliate


class AffiliateUpdated(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """An affiliate was created, or its data or its set of endpoints changed."""

    affiliate: Affiliate


class AffiliateRefreshed(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """Only expiries moved: the affiliate's and each endpoint's (aligned with its endpoints)."""

    affiliate_id: str
    expires_at: datetime
    endpoint_expiries: tuple[datetime, ...]


class AffiliateDeleted(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """A client deleted the affiliate."""

    affiliate_id: str


class AffiliateExpired(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """Garbage collection removed the affiliate because its expiry passed."""

    affiliate_id: str


class EndpointsExpired(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """Some endpoints expired while the affiliate lives on; carries the remaining state."""

    affiliate: Affiliate


class DowntimeCredited(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """The service was down from `down_from` to `down_until`; every expiry moves by that span.

    Recorded once at start-up, so that downtime does not count against TTLs and replay stays
    deterministic (the shift is a fact in the log, not a side effect of the wall clock).
    """

    down_from: datetime
    down_until: datetime


class NodeRevoked(Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """The cluster key revoked a node key: its bound affiliate is gone and it may not write."""

    node_key: bytes
    signature: bytes

    @property
    def affiliate_id(self) -> str:
        """The bound affiliate of the revoked key."""
        return node_affiliate_id(self.node_key)


Event = (
    AffiliateUpdated
    | AffiliateRefreshed
    | AffiliateDeleted
    | AffiliateExpired
    | EndpointsExpired
    | DowntimeCredited
    | NodeRevoked
)

# Stream of events that concern every cluster; cluster ids are at least one byte long.
GLOBAL_STREAM = ""

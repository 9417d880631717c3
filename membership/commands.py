"""Commands: pure functions from (current view, request, now) to the events to append."""

from __future__ import annotations

from datetime import datetime, timedelta

from membership.errors import TooManyAffiliates, TooManyEndpoints, TTLTooLarge
from membership.events import (
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateRefreshed,
    AffiliateUpdated,
    EndpointsExpired,
    Event,
    NodeRevoked,
)
from membership.limits import DEFAULT_LIMITS, Limits
from membership.model import Affiliate, ClusterView, Endpoint, UpdateRequest


def update_affiliate(
    view: ClusterView, request: UpdateRequest, now: datetime, limits: Limits = DEFAULT_LIMITS
) -> list[Event]:
    """Events for a create-or-update; raises TTLTooLarge, TooManyAffiliates, TooManyEndpoints.

    Semantics follow the Talos service: data replaces and *sets* the expiry (it may shorten
    it); endpoints merge by exact bytes, each with its own expiry extended to the later one;
    then the affiliate's expiry is extended to at least now + ttl. Unlike upstream, a request
    that fails a limit stores nothing, not even a new empty affiliate.
    """
    if request.ttl > limits.ttl_max:
        raise TTLTooLarge()
    # Upstream has no lower bound: a missing, zero or negative TTL expires at the next GC.
    expires_at = now + max(request.ttl, timedelta(0))
    existing = view.affiliates.get(request.affiliate_id)
    if existing is None and len(view.affiliates) >= limits.cluster_affiliates_max:
        raise TooManyAffiliates()

    if request.data:
        data, affiliate_expiry = request.data, expires_at
    elif existing is not None:
        data, affiliate_expiry = existing.data, existing.expires_at
    else:
        data, affiliate_expiry = b"", expires_at

    endpoints = list(existing.endpoints) if existing is not None else []
    index = {e.data: i for i, e in enumerate(endpoints)}
    added = False
    for blob in request.endpoints:
        i = index.get(blob)
        if i is None:
            if len(endpoints) >= limits.affiliate_endpoints_max:
                raise TooManyEndpoints()
            index[blob] = len(endpoints)
            endpoints.append(Endpoint(blob, expires_at))
            added = True
        elif endpoints[i].expires_at < expires_at:
            endpoints[i] = Endpoint(blob, expires_at)

    affiliate = Affiliate(
        id=request.affiliate_id,
        data=data,
        endpoints=tuple(endpoints),
        expires_at=max(affiliate_expiry, expires_at),
    )
    if existing is None or added or data != existing.data:
        return [AffiliateUpdated(affiliate=affiliate)]
    if affiliate == existing:
        return []
    return [
        AffiliateRefreshed(
            affiliate_id=affiliate.id,
            expires_at=affiliate.expires_at,
            endpoint_expiries=tuple(e.expires_at for e in affiliate.endpoints),
        )
    ]


def delete_affiliate(view: ClusterView, affiliate_id: str) -> list[Event]:
    """Events for a delete: one AffiliateDeleted, or none when absent (idempotent)."""
    if affiliate_id not in view.affiliates:
        return []
    return [AffiliateDeleted(affiliate_id=affiliate_id)]


def revoke_node(view: ClusterView, node_key: bytes, signature: bytes) -> list[Event]:
    """Events for a revocation the caller verified: one NodeRevoked, none if already revoked."""
    if node_key in view.revoked:
        return []
    return [NodeRevoked(node_key=node_key, signature=signature)]


def collect_garbage(view: ClusterView, now: datetime) -> list[Event]:
    """Events that expire what is past due: whole affiliates, or only some endpoints."""
    events: list[Event] = []
    for affiliate in view.affiliates.values():
        if affiliate.expires_at < now:
            events.append(AffiliateExpired(affiliate_id=affiliate.id))
            continue
        live = tuple(e for e in affiliate.endpoints if e.expires_at > now)
        if len(live) != len(affiliate.endpoints):
            # Upstream notifies watchers of a deletion here; a live affiliate must stay.
            remaining = Affiliate(affiliate.id, affiliate.data, live, affiliate.expires_at)
            events.append(EndpointsExpired(affiliate=remaining))
    return events

"""Builders shared by the command tests: instants, affiliates, clusters, requests, folds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from membership.events import AffiliateRefreshed, Event
from membership.model import Affiliate, ClusterView, Endpoint, UpdateRequest
from membership.registry import apply
from tests.membership.strategies import T0

E1, E2, E3, E4 = b"e1", b"e2", b"e3", b"e4"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def aff(
    aid: str, data: bytes, endpoints: Sequence[tuple[bytes, float]], expires: float
) -> Affiliate:
    return Affiliate(aid, data, tuple(Endpoint(b, at(t)) for b, t in endpoints), at(expires))


def cluster(*members: Affiliate, cluster_id: str = "c") -> ClusterView:
    return ClusterView(cluster_id, {a.id: a for a in members})


def req(
    aid: str = "a",
    data: bytes | None = None,
    endpoints: Sequence[bytes] = (),
    ttl: float = 60,
) -> UpdateRequest:
    return UpdateRequest(
        affiliate_id=aid, data=data, endpoints=tuple(endpoints), ttl=timedelta(seconds=ttl)
    )


def refreshed_from(affiliate: Affiliate) -> AffiliateRefreshed:
    return AffiliateRefreshed(
        affiliate_id=affiliate.id,
        expires_at=affiliate.expires_at,
        endpoint_expiries=tuple(e.expires_at for e in affiliate.endpoints),
    )


def fold_view(view: ClusterView, events: Sequence[Event]) -> ClusterView:
    for event in events:
        view = apply(view, event)
    return view

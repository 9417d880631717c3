"""The registry fold: cluster views are derived from events and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from operator import attrgetter
from typing import Any

from membership.events import (
    GLOBAL_STREAM,
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateRefreshed,
    AffiliateUpdated,
    DowntimeCredited,
    EndpointsExpired,
    Event,
    NodeRevoked,
)
from membership.model import Affiliate, ClusterView, Endpoint

_ZERO = timedelta(0)
_blob = attrgetter("data")

# Every worker folds every event, so this is the serial cost of a write. Each handler takes
# the revision the result must carry and builds at most one new view; a plain dict on the
# event's type dispatches in one lookup where functools.singledispatch costs a wrapper call
# and a cache lookup per event.
_Handler = Callable[[Any, ClusterView, int], ClusterView]


def apply(view: ClusterView, event: Event) -> ClusterView:
    """The view after `event`; pure, and never mutates `view`."""
    return _handler(event)(event, view, view.revision)


def _handler(event: Event) -> _Handler:
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"unknown event {type(event).__name__}")
    return handler


def _unchanged(view: ClusterView, revision: int) -> ClusterView:
    if view.revision == revision:
        return view
    return ClusterView(view.id, view.affiliates, revision, view.revoked)


def _put(event: AffiliateUpdated | EndpointsExpired, view: ClusterView, rev: int) -> ClusterView:
    affiliate = event.affiliate
    affiliates = dict(view.affiliates)
    affiliates[affiliate.id] = affiliate
    return ClusterView(view.id, affiliates, rev, view.revoked)


def _drop(event: AffiliateDeleted | AffiliateExpired, view: ClusterView, rev: int) -> ClusterView:
    if event.affiliate_id not in view.affiliates:
        return _unchanged(view, rev)
    affiliates = dict(view.affiliates)
    del affiliates[event.affiliate_id]
    return ClusterView(view.id, affiliates, rev, view.revoked)


def _refresh(event: AffiliateRefreshed, view: ClusterView, rev: int) -> ClusterView:
    current = view.affiliates.get(event.affiliate_id)
    if current is None:
        return _unchanged(view, rev)
    # map() over two iterables stops at the shorter one, as zip(strict=False) did: expiries
    # are aligned with the endpoints the refresh was decided on.
    endpoints = tuple(map(Endpoint, map(_blob, current.endpoints), event.endpoint_expiries))
    affiliates = dict(view.affiliates)
    affiliates[current.id] = Affiliate(current.id, current.data, endpoints, event.expires_at)
    return ClusterView(view.id, affiliates, rev, view.revoked)


def _credit(event: DowntimeCredited, view: ClusterView, rev: int) -> ClusterView:
    shift = event.down_until - event.down_from
    if not view.affiliates or shift <= _ZERO:
        return _unchanged(view, rev)
    # Applied to every affiliate of every cluster at start-up: one Affiliate and one Endpoint
    # per endpoint, nothing else per affiliate (no copies of the data, no intermediate views).
    affiliates = {
        aid: Affiliate(
            aid,
            a.data,
            tuple([Endpoint(e.data, e.expires_at + shift) for e in a.endpoints]),
            a.expires_at + shift,
        )
        for aid, a in view.affiliates.items()
    }
    return ClusterView(view.id, affiliates, rev, view.revoked)


def _revoke(event: NodeRevoked, view: ClusterView, rev: int) -> ClusterView:
    affiliates = view.affiliates
    if event.affiliate_id in affiliates:
        affiliates = dict(affiliates)
        del affiliates[event.affiliate_id]
    return ClusterView(view.id, affiliates, rev, view.revoked | {event.node_key})


_HANDLERS: dict[type, _Handler] = {
    AffiliateUpdated: _put,
    EndpointsExpired: _put,
    AffiliateRefreshed: _refresh,
    AffiliateDeleted: _drop,
    AffiliateExpired: _drop,
    DowntimeCredited: _credit,
    NodeRevoked: _revoke,
}


def fold(
    views: dict[str, ClusterView], stream: str, event: Event, revision: int
) -> ClusterView | None:
    """Fold one stored event into `views` in place; returns the changed view, if one cluster.

    This is the single place that knows how streams map onto clusters: the global stream
    applies to every cluster, any other stream is one cluster's. Clusters left with no
    affiliates (and no revocations) are dropped, as upstream does.
    """
    handler = _handler(event)
    if stream == GLOBAL_STREAM:
        for cluster_id, view in views.items():
            # Replacing the value of an existing key is no insertion: iterating stays valid.
            views[cluster_id] = handler(event, view, view.revision)
        return None
    before = views.get(stream)
    view = handler(event, ClusterView(stream) if before is None else before, revision)
    # Revocations must outlive the affiliates: an empty cluster still refuses revoked keys.
    if view.affiliates or view.revoked:
        views[stream] = view
    else:
        views.pop(stream, None)
    return view


def project(
    stored: Iterable[tuple[str, Event, int]],
    views: dict[str, ClusterView] | None = None,
) -> dict[str, ClusterView]:
    """Fold (stream, event, revision) triples onto `views` (or empty): replay of the log."""
    result = dict(views) if views is not None else {}
    for stream, event, revision in stored:
        fold(result, stream, event, revision)
    return result

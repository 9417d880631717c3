"""The registry fold: cluster views are derived from events and nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from functools import singledispatch

from msgspec.structs import replace

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


def apply(view: ClusterView, event: Event) -> ClusterView:
    """The view after `event`; pure, and never mutates `view`."""
    return _on(event, view)


# singledispatch picks the implementation by the first argument, hence event first here.
@singledispatch
def _on(event: Event, view: ClusterView) -> ClusterView:
    raise TypeError(f"unknown event {type(event).__name__}")


def _put(view: ClusterView, affiliate: Affiliate) -> ClusterView:
    affiliates = dict(view.affiliates)
    affiliates[affiliate.id] = affiliate
    return replace(view, affiliates=affiliates)


def _drop(view: ClusterView, affiliate_id: str) -> ClusterView:
    if affiliate_id not in view.affiliates:
        return view
    affiliates = dict(view.affiliates)
    del affiliates[affiliate_id]
    return replace(view, affiliates=affiliates)


@_on.register
def _(event: AffiliateUpdated, view: ClusterView) -> ClusterView:
    return _put(view, event.affiliate)


@_on.register
def _(event: EndpointsExpired, view: ClusterView) -> ClusterView:
    return _put(view, event.affiliate)


@_on.register
def _(event: AffiliateRefreshed, view: ClusterView) -> ClusterView:
    current = view.affiliates.get(event.affiliate_id)
    if current is None:
        return view
    endpoints = tuple(
        Endpoint(e.data, at)
        for e, at in zip(current.endpoints, event.endpoint_expiries, strict=False)
    )
    return _put(view, replace(current, endpoints=endpoints, expires_at=event.expires_at))


@_on.register
def _(event: AffiliateDeleted, view: ClusterView) -> ClusterView:
    return _drop(view, event.affiliate_id)


@_on.register
def _(event: AffiliateExpired, view: ClusterView) -> ClusterView:
    return _drop(view, event.affiliate_id)


@_on.register
def _(event: DowntimeCredited, view: ClusterView) -> ClusterView:
    shift = event.down_until - event.down_from
    if not view.affiliates or shift.total_seconds() <= 0:
        return view
    affiliates = {
        a.id: Affiliate(
            a.id,
            a.data,
            tuple(Endpoint(e.data, e.expires_at + shift) for e in a.endpoints),
            a.expires_at + shift,
        )
        for a in view.affiliates.values()
    }
    return replace(view, affiliates=affiliates)


@_on.register
def _(event: NodeRevoked, view: ClusterView) -> ClusterView:
    view = _drop(view, event.affiliate_id)
    return replace(view, revoked=view.revoked | {event.node_key})


def fold(
    views: dict[str, ClusterView], stream: str, event: Event, revision: int
) -> ClusterView | None:
    """Fold one stored event into `views` in place; returns the changed view, if one cluster.

    This is the single place that knows how streams map onto clusters: the global stream
    applies to every cluster, any other stream is one cluster's. Clusters left with no
    affiliates (and no revocations) are dropped, as upstream does.
    """
    if stream == GLOBAL_STREAM:
        for cluster_id, view in list(views.items()):
            views[cluster_id] = apply(view, event)
        return None
    view = apply(views.get(stream) or ClusterView(stream), event)
    view = replace(view, revision=revision)
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

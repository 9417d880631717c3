"""update_affiliate's limits: TTL, affiliates per cluster, endpoints per affiliate, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from membership.commands import update_affiliate
from membership.errors import DomainError, TooManyAffiliates, TooManyEndpoints, TTLTooLarge
from membership.events import AffiliateUpdated
from membership.limits import (
    AFFILIATE_ENDPOINTS_MAX,
    CLUSTER_AFFILIATES_MAX,
    DEFAULT_LIMITS,
    TTL_MAX,
    Limits,
)
from membership.model import Affiliate, ClusterView, UpdateRequest
from membership.registry import apply
from tests.membership.commands_support import E1, E2, aff, cluster, refreshed_from, req
from tests.membership.strategies import T0, US


def test_ttl_above_maximum_raises() -> None:
    request = UpdateRequest(affiliate_id="a", data=b"d", ttl=TTL_MAX + US)
    with pytest.raises(TTLTooLarge):
        update_affiliate(cluster(), request, T0)


def test_ttl_at_maximum_is_accepted() -> None:
    request = UpdateRequest(affiliate_id="a", data=b"d", ttl=TTL_MAX)
    [event] = update_affiliate(cluster(), request, T0)
    assert event == AffiliateUpdated(affiliate=Affiliate("a", b"d", (), T0 + TTL_MAX))


def test_ttl_too_large_wins_over_other_limits() -> None:
    limits = Limits(cluster_affiliates_max=1)
    full = cluster(aff("x", b"", [], 60))
    request = UpdateRequest(affiliate_id="a", ttl=limits.ttl_max + US)
    with pytest.raises(TTLTooLarge):
        update_affiliate(full, request, T0, limits)


def _full_cluster(size: int) -> ClusterView:
    return cluster(*(aff(f"a{i}", b"d", [], 60) for i in range(size)))


def test_1024th_affiliate_fits() -> None:
    view = _full_cluster(CLUSTER_AFFILIATES_MAX - 1)
    [event] = update_affiliate(view, req("new", b"d"), T0)
    assert len(apply(view, event).affiliates) == CLUSTER_AFFILIATES_MAX


def test_1025th_affiliate_raises_and_existing_ones_still_update() -> None:
    view = _full_cluster(CLUSTER_AFFILIATES_MAX)
    with pytest.raises(TooManyAffiliates):
        update_affiliate(view, req("new", b"d"), T0)
    with pytest.raises(TooManyAffiliates):
        update_affiliate(view, req("new", endpoints=[E1]), T0)

    [event] = update_affiliate(view, req("a0", b"changed", [E1], ttl=120), T0)
    assert event == AffiliateUpdated(affiliate=aff("a0", b"changed", [(E1, 120)], 120))
    assert update_affiliate(view, req("a1", ttl=600), T0) == [
        refreshed_from(aff("a1", b"d", [], 600))
    ]


def _blobs(n: int) -> list[bytes]:
    return [i.to_bytes(2, "big") for i in range(n)]


def test_64_endpoints_fit_in_a_new_affiliate() -> None:
    [event] = update_affiliate(
        cluster(), req(data=b"d", endpoints=_blobs(AFFILIATE_ENDPOINTS_MAX)), T0
    )
    assert isinstance(event, AffiliateUpdated)
    assert event.affiliate.endpoint_blobs() == tuple(_blobs(AFFILIATE_ENDPOINTS_MAX))


@pytest.mark.parametrize("data", [None, b"d"])
def test_65th_endpoint_on_a_new_affiliate_stores_nothing(data: bytes | None) -> None:
    # Upstream stores and announces the new affiliate anyway; we store nothing at all.
    request = req(data=data, endpoints=_blobs(AFFILIATE_ENDPOINTS_MAX + 1))
    with pytest.raises(TooManyEndpoints):
        update_affiliate(cluster(), request, T0)


def test_65th_endpoint_on_an_existing_affiliate_raises() -> None:
    blobs = _blobs(AFFILIATE_ENDPOINTS_MAX + 1)
    full = aff("a", b"d", [(b, 60) for b in blobs[:-1]], 60)
    view = cluster(full)
    with pytest.raises(TooManyEndpoints):
        update_affiliate(view, req(data=b"new", endpoints=[blobs[0], blobs[-1]], ttl=120), T0)
    # Known endpoints are no new endpoints: they may still be refreshed.
    [event] = update_affiliate(view, req(endpoints=[blobs[0]], ttl=120), T0)
    assert event == refreshed_from(
        aff("a", b"d", [(blobs[0], 120)] + [(b, 60) for b in blobs[1:-1]], 120)
    )


def test_repeated_blobs_count_once_against_the_endpoint_limit() -> None:
    blobs = _blobs(AFFILIATE_ENDPOINTS_MAX)
    [event] = update_affiliate(cluster(), req(endpoints=blobs + blobs), T0)
    assert isinstance(event, AffiliateUpdated)
    assert len(event.affiliate.endpoints) == AFFILIATE_ENDPOINTS_MAX


def test_custom_limits_are_honoured() -> None:
    limits = Limits(
        cluster_affiliates_max=2, affiliate_endpoints_max=1, ttl_max=timedelta(minutes=1)
    )
    view = cluster(aff("a", b"d", [(E1, 60)], 60), aff("b", b"d", [], 60))

    with pytest.raises(TTLTooLarge):
        update_affiliate(view, req("a", ttl=61), T0, limits)
    assert update_affiliate(view, req("a", ttl=60), T0, limits) == []
    with pytest.raises(TooManyAffiliates):
        update_affiliate(view, req("c"), T0, limits)
    with pytest.raises(TooManyEndpoints):
        update_affiliate(view, req("a", endpoints=[E2]), T0, limits)
    with pytest.raises(TooManyEndpoints):
        update_affiliate(view, req("b", endpoints=[E1, E2]), T0, limits)
    assert update_affiliate(view, req("b", endpoints=[E2, E2]), T0, limits) == [
        AffiliateUpdated(affiliate=aff("b", b"d", [(E2, 60)], 60))
    ]
    # The defaults would have accepted all of these.
    assert update_affiliate(view, req("c", ttl=1800), T0) != []


def test_default_limits_are_upstreams() -> None:
    upstream = Limits(
        cluster_id_max=256,
        affiliate_id_max=256,
        affiliate_data_max=2048,
        affiliate_endpoint_max=32,
        affiliate_endpoints_max=64,
        cluster_affiliates_max=1024,
        ttl_max=timedelta(minutes=30),
    )
    assert upstream == DEFAULT_LIMITS == Limits()


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (TooManyAffiliates, "too many affiliates in the cluster"),
        (TooManyEndpoints, "too many endpoints in the affiliate"),
        (TTLTooLarge, "ttl is too large"),
    ],
)
def test_domain_errors_carry_upstreams_messages(error: type[DomainError], message: str) -> None:
    exc = error()
    assert isinstance(exc, DomainError)
    assert str(exc) == message

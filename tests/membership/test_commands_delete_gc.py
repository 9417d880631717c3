"""delete_affiliate and collect_garbage: idempotent deletion, expiry of affiliates and endpoints."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from membership.commands import collect_garbage, delete_affiliate
from membership.events import AffiliateDeleted, AffiliateExpired, EndpointsExpired, Event
from membership.model import Affiliate
from tests.membership.commands_support import E1, E2, E3, E4, aff, at, cluster, fold_view

# ---------------------------------------------------------------------------------------
# Delete.


def test_delete_present_affiliate() -> None:
    view = cluster(aff("a", b"d", [], 60), aff("b", b"d", [], 60))
    events = delete_affiliate(view, "a")
    assert events == [AffiliateDeleted(affiliate_id="a")]
    assert list(fold_view(view, events).affiliates) == ["b"]


def test_delete_is_idempotent() -> None:
    view = cluster(aff("a", b"d", [], 60))
    after = fold_view(view, delete_affiliate(view, "a"))
    assert delete_affiliate(after, "a") == []
    assert delete_affiliate(cluster(), "a") == []


# ---------------------------------------------------------------------------------------
# Garbage collection.


@dataclass(frozen=True)
class GcCase:
    before: tuple[Affiliate, ...]
    now: float
    expected: list[Event]


def _trimmed(affiliate: Affiliate) -> EndpointsExpired:
    return EndpointsExpired(affiliate=affiliate)


GC_CASES = [
    pytest.param(GcCase((), 100, []), id="empty-cluster"),
    pytest.param(GcCase((aff("a", b"d", [(E1, 100)], 100),), 50, []), id="nothing-due"),
    pytest.param(
        GcCase((aff("a", b"d", [], 100),), 100.000001, [AffiliateExpired(affiliate_id="a")]),
        id="affiliate-expired-strictly-before-now",
    ),
    pytest.param(GcCase((aff("a", b"d", [], 100),), 100, []), id="affiliate-expiring-now-survives"),
    pytest.param(
        GcCase(
            (aff("a", b"d", [(E1, 100), (E2, 200)], 200),),
            100,
            [_trimmed(aff("a", b"d", [(E2, 200)], 200))],
        ),
        id="endpoint-expiring-now-is-dropped",
    ),
    pytest.param(
        GcCase(
            (aff("a", b"d", [(E1, 50), (E2, 300), (E3, 40), (E4, 400)], 500),),
            100,
            [_trimmed(aff("a", b"d", [(E2, 300), (E4, 400)], 500))],
        ),
        id="some-endpoints-expire-remaining-keep-order",
    ),
    pytest.param(
        GcCase((aff("a", b"d", [(E1, 50)], 500),), 100, [_trimmed(aff("a", b"d", [], 500))]),
        id="all-endpoints-expire-affiliate-lives",
    ),
    pytest.param(
        GcCase((aff("a", b"d", [(E1, 40)], 50),), 100, [AffiliateExpired(affiliate_id="a")]),
        id="expired-affiliate-is-not-also-trimmed",
    ),
    pytest.param(
        GcCase(
            (
                aff("a", b"d", [], 50),
                aff("b", b"d", [(E1, 50), (E2, 500)], 500),
                aff("c", b"d", [(E1, 500)], 500),
                aff("d", b"", [], 99),
            ),
            100,
            [
                AffiliateExpired(affiliate_id="a"),
                _trimmed(aff("b", b"d", [(E2, 500)], 500)),
                AffiliateExpired(affiliate_id="d"),
            ],
        ),
        id="several-affiliates-in-order",
    ),
]


@pytest.mark.parametrize("case", GC_CASES)
def test_collect_garbage(case: GcCase) -> None:
    view = cluster(*case.before)
    events = collect_garbage(view, at(case.now))
    assert events == case.expected
    # Collecting again at the same instant finds nothing more.
    assert collect_garbage(fold_view(view, events), at(case.now)) == []


def test_endpoints_expiring_is_not_a_deletion() -> None:
    view = cluster(aff("a", b"d", [(E1, 50), (E2, 500)], 500))
    after = fold_view(view, collect_garbage(view, at(100)))
    assert after.affiliates == {"a": aff("a", b"d", [(E2, 500)], 500)}

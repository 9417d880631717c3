"""Commands: update/delete/GC semantics (reference 1.3 and 2.2), limits, and an oracle model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import pytest
from hypothesis import given, settings

from membership.commands import collect_garbage, delete_affiliate, update_affiliate
from membership.errors import DomainError, TooManyAffiliates, TooManyEndpoints, TTLTooLarge
from membership.events import (
    GLOBAL_STREAM,
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateRefreshed,
    AffiliateUpdated,
    DowntimeCredited,
    EndpointsExpired,
    Event,
)
from membership.limits import (
    AFFILIATE_ENDPOINTS_MAX,
    CLUSTER_AFFILIATES_MAX,
    DEFAULT_LIMITS,
    TTL_MAX,
    Limits,
)
from membership.model import Affiliate, ClusterView, Endpoint, UpdateRequest
from membership.registry import apply
from tests.membership.strategies import (
    T0,
    US,
    CollectGarbage,
    CreditDowntime,
    Delete,
    LiveRun,
    Step,
    Transition,
    Update,
    run_live,
    steps,
)

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


# ---------------------------------------------------------------------------------------
# Update: a table of the reference's rules.

Kind = Literal["updated", "refreshed", "none"]


@dataclass(frozen=True)
class UpdateCase:
    before: Affiliate | None
    request: UpdateRequest
    now: float
    after: Affiliate
    kind: Kind


UPDATE_CASES = [
    pytest.param(
        UpdateCase(
            None, req(data=b"d", endpoints=[E1]), 0, aff("a", b"d", [(E1, 60)], 60), "updated"
        ),
        id="create-with-data",
    ),
    pytest.param(
        UpdateCase(
            None, req(endpoints=[E1, E2]), 0, aff("a", b"", [(E1, 60), (E2, 60)], 60), "updated"
        ),
        id="create-from-endpoints-only-has-empty-data",
    ),
    pytest.param(
        UpdateCase(None, req(data=b""), 0, aff("a", b"", [], 60), "updated"),
        id="create-with-empty-data-bytes",
    ),
    pytest.param(
        UpdateCase(None, req(ttl=60), 5, aff("a", b"", [], 65), "updated"),
        id="create-bare",
    ),
    pytest.param(
        UpdateCase(
            None,
            req(data=b"d", endpoints=[E1], ttl=0),
            10,
            aff("a", b"d", [(E1, 10)], 10),
            "updated",
        ),
        id="zero-ttl-expires-now",
    ),
    pytest.param(
        UpdateCase(
            None,
            req(data=b"d", endpoints=[E1], ttl=-30),
            10,
            aff("a", b"d", [(E1, 10)], 10),
            "updated",
        ),
        id="negative-ttl-expires-now",
    ),
    pytest.param(
        UpdateCase(None, req(data=b"d", ttl=1800), 0, aff("a", b"d", [], 1800), "updated"),
        id="ttl-at-the-maximum",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"old", [(E1, 600)], 600),
            req(data=b"new", ttl=60),
            0,
            aff("a", b"new", [(E1, 600)], 60),
            "updated",
        ),
        id="new-data-replaces-and-shortens-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"old", [], 60),
            req(data=b"new", ttl=600),
            0,
            aff("a", b"new", [], 600),
            "updated",
        ),
        id="new-data-lengthens-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(E1, 600)], 600),
            req(data=b"d", ttl=60),
            0,
            aff("a", b"d", [(E1, 600)], 60),
            "refreshed",
        ),
        id="same-data-sets-a-shorter-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [], 60), req(data=b"d", ttl=60), 30, aff("a", b"d", [], 90), "refreshed"
        ),
        id="same-data-later-extends-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [], 600),
            req(data=b"d", ttl=-5),
            100,
            aff("a", b"d", [], 100),
            "refreshed",
        ),
        id="same-data-negative-ttl-expires-now",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(E1, 60)], 60),
            req(data=b"d", endpoints=[E1], ttl=60),
            0,
            aff("a", b"d", [(E1, 60)], 60),
            "none",
        ),
        id="same-request-at-same-time-changes-nothing",
    ),
    pytest.param(
        UpdateCase(aff("a", b"d", [], 600), req(ttl=60), 0, aff("a", b"d", [], 600), "none"),
        id="no-data-keeps-data-and-longer-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [], 600), req(data=b"", ttl=60), 0, aff("a", b"d", [], 600), "none"
        ),
        id="empty-data-bytes-keep-data",
    ),
    pytest.param(
        UpdateCase(aff("a", b"d", [], 60), req(ttl=60), 30, aff("a", b"d", [], 90), "refreshed"),
        id="empty-update-extends-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(E1, 60)], 60),
            req(endpoints=[E1], ttl=120),
            30,
            aff("a", b"d", [(E1, 150)], 150),
            "refreshed",
        ),
        id="endpoint-only-update-extends-affiliate-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(E1, 600)], 600),
            req(endpoints=[E1], ttl=60),
            0,
            aff("a", b"d", [(E1, 600)], 600),
            "none",
        ),
        id="endpoint-only-update-never-shortens",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(E1, 100), (E2, 100)], 600),
            req(endpoints=[E2], ttl=300),
            0,
            aff("a", b"d", [(E1, 100), (E2, 300)], 600),
            "refreshed",
        ),
        id="duplicate-endpoint-extends-only-its-own-expiry",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(E1, 600), (E2, 100)], 600),
            req(endpoints=[E3, E2, E4], ttl=300),
            0,
            aff("a", b"d", [(E1, 600), (E2, 300), (E3, 300), (E4, 300)], 600),
            "updated",
        ),
        id="new-endpoints-appended-in-order-with-own-expiry",
    ),
    pytest.param(
        UpdateCase(
            None, req(endpoints=[E1, E2, E1]), 0, aff("a", b"", [(E1, 60), (E2, 60)], 60), "updated"
        ),
        id="duplicate-blobs-in-one-request-stored-once",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [(b"e1", 600)], 600),
            req(endpoints=[b"E1", b"e1\x00", b"e1"], ttl=60),
            0,
            aff("a", b"d", [(b"e1", 600), (b"E1", 60), (b"e1\x00", 60)], 600),
            "updated",
        ),
        id="endpoints-match-by-exact-bytes",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"old", [(E1, 600)], 600),
            req(data=b"new", endpoints=[E1, E2], ttl=60),
            0,
            aff("a", b"new", [(E1, 600), (E2, 60)], 60),
            "updated",
        ),
        id="data-and-endpoints-together",
    ),
    pytest.param(
        UpdateCase(
            aff("a", b"d", [], 10),
            req(endpoints=[E1], ttl=0),
            20,
            aff("a", b"d", [(E1, 20)], 20),
            "updated",
        ),
        id="past-due-but-uncollected-affiliate-is-revived",
    ),
]


@pytest.mark.parametrize("case", UPDATE_CASES)
def test_update(case: UpdateCase) -> None:
    other = aff("other", b"o", [(E1, 5)], 5)
    view = cluster(other) if case.before is None else cluster(other, case.before)

    events = update_affiliate(view, case.request, at(case.now))

    by_kind: dict[Kind, list[Event]] = {
        "updated": [AffiliateUpdated(affiliate=case.after)],
        "refreshed": [refreshed_from(case.after)],
        "none": [],
    }
    expected = by_kind[case.kind]
    assert events == expected
    result = fold_view(view, events)
    assert result.affiliates == {"other": other, "a": case.after}


def test_update_does_not_touch_its_inputs() -> None:
    before = aff("a", b"d", [(E1, 60)], 60)
    view = cluster(before)
    request = req(data=b"x", endpoints=[E2], ttl=120)
    update_affiliate(view, request, at(0))
    assert view == cluster(before)
    assert request == req(data=b"x", endpoints=[E2], ttl=120)


def test_update_is_deterministic() -> None:
    view = cluster(aff("a", b"d", [(E1, 60)], 60))
    request = req(data=b"x", endpoints=[E2, E1], ttl=120)
    assert update_affiliate(view, request, at(7)) == update_affiliate(view, request, at(7))


# ---------------------------------------------------------------------------------------
# Update: limits.


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


# ---------------------------------------------------------------------------------------
# Property: every command, against an oracle written from the reference, not the code.


def expected_affiliate(old: Affiliate | None, request: UpdateRequest, now: datetime) -> Affiliate:
    floor = now + max(request.ttl, timedelta(0))
    expiries = {e.data: e.expires_at for e in old.endpoints} if old is not None else {}
    for blob in request.endpoints:
        expiries[blob] = max(expiries.get(blob, floor), floor)
    if request.data:
        data, expires_at = request.data, floor
    elif old is not None:
        data, expires_at = old.data, max(old.expires_at, floor)
    else:
        data, expires_at = b"", floor
    endpoints = tuple(Endpoint(b, t) for b, t in expiries.items())
    return Affiliate(request.affiliate_id, data, endpoints, expires_at)


def expected_error(
    view: ClusterView, old: Affiliate | None, new: Affiliate, request: UpdateRequest, limits: Limits
) -> type[DomainError] | None:
    if request.ttl > limits.ttl_max:
        return TTLTooLarge
    if old is None and len(view.affiliates) >= limits.cluster_affiliates_max:
        return TooManyAffiliates
    if len(new.endpoints) > limits.affiliate_endpoints_max:
        return TooManyEndpoints
    return None


def _without(views: dict[str, ClusterView], cluster_id: str) -> dict[str, ClusterView]:
    return {k: v for k, v in views.items() if k != cluster_id}


def _check_update(t: Transition, cmd: Update, run: LiveRun) -> None:
    cid, request = cmd.cluster_id, cmd.request
    view = t.before.get(cid) or ClusterView(cid)
    old = view.affiliates.get(request.affiliate_id)
    new = expected_affiliate(old, request, t.now)
    error = expected_error(view, old, new, request, run.limits)
    if error is not None:
        assert type(t.error) is error
        assert (t.emitted, t.after) == ((), t.before)
        with pytest.raises(error):
            update_affiliate(run.view(cid), request, t.now, run.limits)
        return

    assert t.error is None
    after = t.after[cid]
    assert after.affiliates == {**view.affiliates, request.affiliate_id: new}
    assert _without(t.after, cid) == _without(t.before, cid)
    visible = old is None or new.data != old.data or len(new.endpoints) != len(old.endpoints)
    if visible:
        assert t.emitted == ((cid, AffiliateUpdated(affiliate=new)),)
    elif new == old:
        assert t.emitted == ()
    else:
        assert t.emitted == ((cid, refreshed_from(new)),)
    # The same request at the same instant is a no-op.
    assert update_affiliate(after, request, t.now, run.limits) == []


def _check_delete(t: Transition, cmd: Delete) -> None:
    cid, aid = cmd.cluster_id, cmd.affiliate_id
    view = t.before.get(cid) or ClusterView(cid)
    remaining = {k: a for k, a in view.affiliates.items() if k != aid}
    assert _without(t.after, cid) == _without(t.before, cid)
    if remaining:
        assert t.after[cid].affiliates == remaining
    else:
        assert cid not in t.after
    present = aid in view.affiliates
    assert t.emitted == (((cid, AffiliateDeleted(affiliate_id=aid)),) if present else ())
    assert delete_affiliate(t.after.get(cid) or ClusterView(cid), aid) == []


def _check_gc(t: Transition) -> None:
    expected_views: dict[str, dict[str, Affiliate]] = {}
    expected_events: list[tuple[str, Event]] = []
    for cid, view in t.before.items():
        kept: dict[str, Affiliate] = {}
        for a in view.affiliates.values():
            if a.expires_at < t.now:
                expected_events.append((cid, AffiliateExpired(affiliate_id=a.id)))
                continue
            live = replace(a, endpoints=tuple(e for e in a.endpoints if e.expires_at > t.now))
            if live != a:
                expected_events.append((cid, EndpointsExpired(affiliate=live)))
            kept[a.id] = live
        if kept:
            expected_views[cid] = kept
    assert {cid: dict(v.affiliates) for cid, v in t.after.items()} == expected_views
    assert list(t.emitted) == expected_events
    for view in t.after.values():
        assert collect_garbage(view, t.now) == []


def _shifted(affiliate: Affiliate, by: timedelta) -> Affiliate:
    return Affiliate(
        affiliate.id,
        affiliate.data,
        tuple(Endpoint(e.data, e.expires_at + by) for e in affiliate.endpoints),
        affiliate.expires_at + by,
    )


def _check_credit(t: Transition, cmd: CreditDowntime) -> None:
    credit = DowntimeCredited(down_from=t.now, down_until=t.now + cmd.span)
    assert t.emitted == ((GLOBAL_STREAM, credit),)
    by = max(cmd.span, timedelta(0))
    assert t.after == {
        cid: replace(v, affiliates={k: _shifted(a, by) for k, a in v.affiliates.items()})
        for cid, v in t.before.items()
    }


def _check_against_oracle(t: Transition, run: LiveRun) -> None:
    match t.step.command:
        case Update() as cmd:
            _check_update(t, cmd, run)
        case Delete() as cmd:
            _check_delete(t, cmd)
        case CollectGarbage():
            _check_gc(t)
        case CreditDowntime() as cmd:
            _check_credit(t, cmd)


@settings(max_examples=200, deadline=None)
@given(steps())
def test_commands_follow_the_reference(script: list[Step]) -> None:
    run_live(script, observe=_check_against_oracle)

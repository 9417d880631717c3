"""The registry fold: each event's effect, streams onto clusters, and replay equals live."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings

from membership.codec import (
    decode_event,
    encode_event,
    event_type,
)
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
from membership.model import Affiliate, ClusterView, Endpoint
from membership.registry import apply, fold, project
from membership.snapshot import decode_snapshot, encode_snapshot
from tests.membership.strategies import T0, LiveRun, Step, Stored, Transition, run_live, steps

E1, E2, E3 = b"e1", b"e2", b"e3"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def aff(
    aid: str, data: bytes, endpoints: Sequence[tuple[bytes, float]], expires: float
) -> Affiliate:
    return Affiliate(aid, data, tuple(Endpoint(b, at(t)) for b, t in endpoints), at(expires))


def cluster(*members: Affiliate, cluster_id: str = "c", revision: int = 0) -> ClusterView:
    return ClusterView(cluster_id, {a.id: a for a in members}, revision)


def credit(down_from: float, down_until: float) -> DowntimeCredited:
    return DowntimeCredited(down_from=at(down_from), down_until=at(down_until))


A = aff("a", b"da", [(E1, 100), (E2, 200)], 300)
B = aff("b", b"db", [], 400)

# ---------------------------------------------------------------------------------------
# apply: one event at a time.


@dataclass(frozen=True)
class ApplyCase:
    before: tuple[Affiliate, ...]
    event: Event
    after: tuple[Affiliate, ...]


APPLY_CASES = [
    pytest.param(
        ApplyCase((B,), AffiliateUpdated(affiliate=A), (B, A)),
        id="updated-adds",
    ),
    pytest.param(
        ApplyCase(
            (A, B),
            AffiliateUpdated(affiliate=aff("a", b"new", [(E3, 9)], 9)),
            (aff("a", b"new", [(E3, 9)], 9), B),
        ),
        id="updated-replaces-in-place",
    ),
    pytest.param(
        ApplyCase(
            (A, B),
            EndpointsExpired(affiliate=aff("a", b"da", [(E2, 200)], 300)),
            (aff("a", b"da", [(E2, 200)], 300), B),
        ),
        id="endpoints-expired-replaces",
    ),
    pytest.param(
        ApplyCase(
            (A, B),
            AffiliateRefreshed(
                affiliate_id="a", expires_at=at(900), endpoint_expiries=(at(150), at(250))
            ),
            (aff("a", b"da", [(E1, 150), (E2, 250)], 900), B),
        ),
        id="refreshed-moves-only-expiries",
    ),
    pytest.param(
        ApplyCase((A, B), AffiliateDeleted(affiliate_id="a"), (B,)),
        id="deleted-removes",
    ),
    pytest.param(
        ApplyCase((A, B), AffiliateExpired(affiliate_id="b"), (A,)),
        id="expired-removes",
    ),
    pytest.param(
        ApplyCase(
            (A, B),
            credit(1000, 1060),
            (aff("a", b"da", [(E1, 160), (E2, 260)], 360), aff("b", b"db", [], 460)),
        ),
        id="downtime-shifts-every-expiry",
    ),
    pytest.param(
        ApplyCase(
            (A,),
            credit(1000, 1000.000001),
            (aff("a", b"da", [(E1, 100.000001), (E2, 200.000001)], 300.000001),),
        ),
        id="downtime-of-a-microsecond",
    ),
]


@pytest.mark.parametrize("case", APPLY_CASES)
def test_apply(case: ApplyCase) -> None:
    view = cluster(*case.before, revision=5)
    after = apply(view, case.event)
    assert list(after.affiliates.items()) == [(a.id, a) for a in case.after]
    assert (after.id, after.revision) == ("c", 5)  # fold, not apply, moves the revision
    assert view == cluster(*case.before, revision=5)  # never mutated


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            AffiliateRefreshed(affiliate_id="x", expires_at=at(1), endpoint_expiries=()),
            id="refreshed",
        ),
        pytest.param(AffiliateDeleted(affiliate_id="x"), id="deleted"),
        pytest.param(AffiliateExpired(affiliate_id="x"), id="expired"),
        pytest.param(credit(100, 100), id="zero-downtime"),
        pytest.param(credit(100, 40), id="negative-downtime"),
    ],
)
def test_apply_without_effect_returns_the_same_view(event: Event) -> None:
    view = cluster(A, B)
    assert apply(view, event) is view


def test_downtime_on_an_empty_view_is_a_no_op() -> None:
    view = ClusterView("c")
    assert apply(view, credit(0, 60)) is view


def test_apply_rejects_unknown_events() -> None:
    with pytest.raises(TypeError, match="unknown event str"):
        apply(cluster(A), "AffiliateUpdated")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# fold and project: streams onto clusters.


def test_fold_creates_a_cluster_and_records_the_revision() -> None:
    views: dict[str, ClusterView] = {}
    result = fold(views, "c", AffiliateUpdated(affiliate=A), 7)
    assert views == {"c": cluster(A, revision=7)}
    assert result == views["c"]


def test_fold_moves_the_revision_of_its_cluster_only() -> None:
    views = {"c": cluster(A, revision=1), "d": cluster(B, cluster_id="d", revision=2)}
    fold(
        views, "c", AffiliateRefreshed(affiliate_id="a", expires_at=at(1), endpoint_expiries=()), 9
    )
    assert (views["c"].revision, views["d"].revision) == (9, 2)


def test_fold_drops_a_cluster_left_empty() -> None:
    views = {"c": cluster(A, revision=1), "d": cluster(B, cluster_id="d", revision=2)}
    result = fold(views, "c", AffiliateExpired(affiliate_id="a"), 3)
    assert views == {"d": cluster(B, cluster_id="d", revision=2)}
    assert result == ClusterView("c", {}, 3)


@pytest.mark.parametrize(
    "event",
    [
        AffiliateDeleted(affiliate_id="a"),
        AffiliateRefreshed(affiliate_id="a", expires_at=at(1), endpoint_expiries=()),
    ],
)
def test_fold_does_not_create_clusters_for_events_on_nothing(event: Event) -> None:
    views: dict[str, ClusterView] = {}
    fold(views, "c", event, 1)
    assert views == {}


def test_fold_applies_the_global_stream_to_every_cluster() -> None:
    views = {"c": cluster(A, revision=1), "d": cluster(B, cluster_id="d", revision=2)}
    assert fold(views, GLOBAL_STREAM, credit(0, 10), 3) is None
    assert views == {
        "c": cluster(aff("a", b"da", [(E1, 110), (E2, 210)], 310), revision=1),
        "d": cluster(aff("b", b"db", [], 410), cluster_id="d", revision=2),
    }
    # A global event is not a cluster's event: cluster revisions stay those of their streams.
    assert GLOBAL_STREAM not in views


def test_fold_of_the_global_stream_on_no_clusters() -> None:
    views: dict[str, ClusterView] = {}
    assert fold(views, GLOBAL_STREAM, credit(0, 10), 1) is None
    assert views == {}


def test_project_from_empty() -> None:
    log: list[Stored] = [
        ("c", AffiliateUpdated(affiliate=A), 1),
        ("d", AffiliateUpdated(affiliate=B), 2),
        ("c", AffiliateUpdated(affiliate=B), 3),
        (GLOBAL_STREAM, credit(0, 100), 4),
        ("c", AffiliateDeleted(affiliate_id="a"), 5),
        ("d", AffiliateExpired(affiliate_id="b"), 6),
        (GLOBAL_STREAM, credit(500, 499), 7),
    ]
    assert project(log) == {"c": cluster(aff("b", b"db", [], 500), revision=5)}


def test_project_onto_views_leaves_them_alone() -> None:
    start = {"c": cluster(A, revision=1)}
    result = project([("c", AffiliateDeleted(affiliate_id="a"), 2)], views=start)
    assert result == {}
    assert start == {"c": cluster(A, revision=1)}
    assert project([], views=start) == start


def test_downtime_credit_shifts_every_cluster() -> None:
    log: list[Stored] = [
        ("c1", AffiliateUpdated(affiliate=A), 1),
        ("c2", AffiliateUpdated(affiliate=B), 2),
        (GLOBAL_STREAM, credit(1000, 1000 + 3600), 3),
    ]
    views = project(log)
    hour = 3600
    assert views["c1"].affiliates["a"] == aff(
        "a", b"da", [(E1, 100 + hour), (E2, 200 + hour)], 300 + hour
    )
    assert views["c2"].affiliates["b"] == aff("b", b"db", [], 400 + hour)


# ---------------------------------------------------------------------------------------
# Properties over live runs: replay from empty, from any split point and from a snapshot.


def _check_invariants(t: Transition, run: LiveRun) -> None:
    last: dict[str, int] = {}
    for stream, _, revision in run.log:
        last[stream] = revision
    for cid, view in run.views.items():
        assert cid != GLOBAL_STREAM
        assert view.id == cid
        assert view.affiliates, "empty clusters are dropped"
        assert view.revision == last[cid]
        assert len(view.affiliates) <= run.limits.cluster_affiliates_max
        for key, affiliate in view.affiliates.items():
            assert key == affiliate.id
            blobs = affiliate.endpoint_blobs()
            assert len(blobs) <= run.limits.affiliate_endpoints_max
            assert len(set(blobs)) == len(blobs), "endpoints are unique by bytes"


@settings(max_examples=200, deadline=None)
@given(steps())
def test_replay_equals_live(script: list[Step]) -> None:
    live_at: dict[int, dict[str, ClusterView]] = {0: {}}

    def observe(t: Transition, run: LiveRun) -> None:
        _check_invariants(t, run)
        live_at[len(run.log)] = dict(run.views)

    run = run_live(script, observe=observe)
    log, final = run.log, run.views

    assert project(log) == final
    for k in range(len(log) + 1):
        prefix = project(log[:k])
        if k in live_at:
            # Replay up to any command gives what the live service had at that moment.
            assert prefix == live_at[k]
        assert project(log[k:], views=prefix) == final
        restored = decode_snapshot(encode_snapshot(prefix.values()))
        assert restored == prefix
        assert project(log[k:], views=restored) == final
    for _, event, _ in log:
        assert decode_event(event_type(event), encode_event(event)) == event

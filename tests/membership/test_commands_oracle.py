"""Property: every command, against an oracle written from the reference, not the code."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from msgspec.structs import replace

from membership.commands import collect_garbage, delete_affiliate, update_affiliate
from membership.errors import DomainError, TooManyAffiliates, TooManyEndpoints, TTLTooLarge
from membership.events import (
    GLOBAL_STREAM,
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateUpdated,
    DowntimeCredited,
    EndpointsExpired,
    Event,
)
from membership.limits import Limits
from membership.model import Affiliate, ClusterView, Endpoint, UpdateRequest
from tests.membership.commands_support import refreshed_from
from tests.membership.strategies import (
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

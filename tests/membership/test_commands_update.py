"""update_affiliate against a table of the reference's rules (reference 1.3 and 2.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from membership.commands import update_affiliate
from membership.events import AffiliateUpdated, Event
from membership.model import Affiliate, UpdateRequest
from tests.membership.commands_support import (
    E1,
    E2,
    E3,
    E4,
    aff,
    at,
    cluster,
    fold_view,
    refreshed_from,
    req,
)

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

"""Revocation: the command, the fold, and that an emptied cluster keeps its revocations."""

from __future__ import annotations

from datetime import UTC, datetime

from membership import commands, keys
from membership.events import AffiliateDeleted, NodeRevoked
from membership.model import Affiliate, ClusterView
from membership.registry import fold, project

KEY = bytes([7]) * 32
BOUND = keys.node_affiliate_id(KEY)
AT = datetime(2030, 1, 1, tzinfo=UTC)
REVOKED = NodeRevoked(node_key=KEY, signature=b"s" * 64)


def test_revoke_command_is_idempotent() -> None:
    assert commands.revoke_node(ClusterView("c"), KEY, b"s" * 64) == [REVOKED]
    assert commands.revoke_node(ClusterView("c", revoked=frozenset({KEY})), KEY, b"x") == []


def test_revocation_removes_the_record_and_remembers_the_key() -> None:
    views = {"c": ClusterView("c", {BOUND: Affiliate(BOUND, b"d", (), AT)}, 1)}
    view = fold(views, "c", REVOKED, 2)
    assert view is not None
    assert view.affiliates == {}
    assert view.revoked == {KEY}
    assert REVOKED.affiliate_id == BOUND
    # The cluster has no affiliates left, and must still be there to refuse the key.
    assert views["c"].revoked == {KEY}
    assert views["c"].revision == 2


def test_a_cluster_with_neither_affiliates_nor_revocations_is_dropped() -> None:
    views = project([("c", AffiliateDeleted(affiliate_id="gone"), 1)])
    assert views == {}
    assert project([("c", REVOKED, 1)])["c"].revoked == {KEY}

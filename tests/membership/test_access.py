"""Every access rule, one refusal each, and the grants that pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from membership import keys
from membership.access import CLOCK_WINDOW, Grant, authorize, check_revocation, check_view
from membership.errors import AccessError, NotAuthenticated, NotPermitted
from membership.model import Affiliate, ClusterView
from membership.signatures import SignedRequest, record_digest

SECRET = bytes(range(32))
CLUSTER = keys.cluster_signing_key(SECRET)
LOCKED = keys.locked_cluster_id(keys.public_bytes(CLUSTER))
OPEN = "a" * 43 + "="
NODE = Ed25519PrivateKey.from_private_bytes(bytes([0x42]) * 32)
NODE_KEY = keys.public_bytes(NODE)
BOUND = keys.node_affiliate_id(NODE_KEY)
OTHER = Ed25519PrivateKey.from_private_bytes(bytes([0x43]) * 32)
NOW = 1_700_000_000
AT = datetime(2030, 1, 1, tzinfo=UTC)


def proof(
    key: Ed25519PrivateKey = NODE,
    *,
    created: int = NOW,
    endorsement: bytes | str | None = "cluster",
    base: bytes = b"request",
    signed: bytes | None = None,
    digest: bytes | None = None,
) -> SignedRequest:
    public = keys.public_bytes(key)
    if endorsement == "cluster":
        endorsement = keys.endorse(CLUSTER, public)
    assert not isinstance(endorsement, str)
    return SignedRequest(
        node_key=public,
        endorsement=endorsement,
        signature=key.sign(signed if signed is not None else base),
        base=base,
        created=created,
        record_digest=digest,
    )


def test_open_cluster_plain_ids_need_nothing() -> None:
    assert authorize(OPEN, "talosnode", None, NOW) == Grant(None)
    # A proof on a plain id is ignored: the id does not say whose it is.
    assert authorize(OPEN, "talosnode", proof(created=0), NOW) == Grant(None)


def test_signed_writes_pass() -> None:
    assert authorize(LOCKED, BOUND, proof(), NOW) == Grant(NODE_KEY)
    assert authorize(OPEN, BOUND, proof(endorsement=None), NOW) == Grant(NODE_KEY)
    assert authorize(LOCKED, BOUND, proof(digest=b"d"), NOW + CLOCK_WINDOW) == Grant(NODE_KEY, b"d")


@pytest.mark.parametrize(
    ("cluster", "affiliate", "request_proof", "error", "message"),
    [
        (LOCKED, BOUND, None, NotAuthenticated, "cluster is locked"),
        (OPEN, BOUND, None, NotAuthenticated, "bound to a node key"),
        (LOCKED, "talosnode", proof(), NotPermitted, "only write its own bound"),
        (LOCKED, BOUND, proof(OTHER), NotPermitted, "key does not match"),
        (OPEN, BOUND, proof(OTHER), NotPermitted, "key does not match"),
        (LOCKED, BOUND, proof(created=NOW - CLOCK_WINDOW - 1), NotAuthenticated, "clock"),
        (LOCKED, BOUND, proof(created=NOW + CLOCK_WINDOW + 1), NotAuthenticated, "clock"),
        (LOCKED, BOUND, proof(endorsement=None), NotAuthenticated, "not endorsed"),
        (LOCKED, BOUND, proof(endorsement=bytes(64)), NotAuthenticated, "not endorsed"),
        (LOCKED, BOUND, proof(signed=b"other"), NotAuthenticated, "does not verify"),
        (OPEN, BOUND, proof(signed=b"other"), NotAuthenticated, "does not verify"),
        ("kc1.broken", BOUND, proof(), NotPermitted, "does not name a cluster key"),
        (OPEN, "kn1.broken", None, NotPermitted, "does not name a node key"),
    ],
)
def test_refusals(
    cluster: str,
    affiliate: str,
    request_proof: SignedRequest | None,
    error: type[AccessError],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        authorize(cluster, affiliate, request_proof, NOW)


def test_an_endorsement_from_another_cluster_does_not_count() -> None:
    stranger = keys.cluster_signing_key(bytes(32))
    foreign = proof(endorsement=keys.endorse(stranger, NODE_KEY))
    with pytest.raises(NotAuthenticated, match="not endorsed"):
        authorize(LOCKED, BOUND, foreign, NOW)


def test_revoked_keys_are_refused_for_good() -> None:
    view = ClusterView(LOCKED, revoked=frozenset({NODE_KEY}))
    with pytest.raises(NotPermitted, match="revoked"):
        check_view(view, BOUND, Grant(NODE_KEY), deleting=False)
    check_view(view, "talosnode", Grant(None), deleting=False)
    check_view(ClusterView(LOCKED), BOUND, Grant(NODE_KEY), deleting=False)


def test_a_delete_names_the_record_it_removes() -> None:
    view = ClusterView(LOCKED, {BOUND: Affiliate(BOUND, b"v2", (), AT)})
    check_view(view, BOUND, Grant(NODE_KEY, record_digest(b"v2")), deleting=True)
    # A copied delete of the earlier record, replayed after the node published again:
    with pytest.raises(NotPermitted, match="not the current one"):
        check_view(view, BOUND, Grant(NODE_KEY, record_digest(b"v1")), deleting=True)
    with pytest.raises(NotPermitted, match="not the current one"):
        check_view(view, BOUND, Grant(NODE_KEY, None), deleting=True)
    # Nothing to remove: the delete is a no-op, whatever it names.
    check_view(ClusterView(LOCKED), BOUND, Grant(NODE_KEY, None), deleting=True)


def test_revocations_must_be_the_clusters() -> None:
    check_revocation(LOCKED, NODE_KEY, keys.revoke(CLUSTER, NODE_KEY))
    with pytest.raises(NotAuthenticated, match="not signed by the cluster key"):
        check_revocation(LOCKED, NODE_KEY, keys.endorse(CLUSTER, NODE_KEY))
    with pytest.raises(NotPermitted, match="only a locked cluster"):
        check_revocation(OPEN, NODE_KEY, keys.revoke(CLUSTER, NODE_KEY))

"""Who may write what: the rules a write or delete must pass, as pure functions.

`authorize` checks everything the request carries against the ids themselves (no state);
`check_view` checks what depends on the cluster's current state (revocations, and which
record a delete removes) and runs under the cluster's lock. Both raise AccessError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from membership import keys
from membership.errors import NotAuthenticated, NotPermitted
from membership.model import ClusterView
from membership.signatures import SignedRequest, record_digest

# Signed requests older or newer than this (seconds) are refused: bounds replays of a
# copied request, and tolerates ordinary clock skew between nodes and the service.
CLOCK_WINDOW = 60

# (cluster key, node key, endorsement) -> valid; callers may pass a cached keys.is_endorsed.
Endorsed = Callable[[bytes, bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class Grant:
    """What `authorize` established: the node key that signed (None: unsigned)."""

    node_key: bytes | None
    record_digest: bytes | None = None


def authorize(
    cluster_id: str,
    affiliate_id: str,
    proof: SignedRequest | None,
    now: int,
    endorsed: Endorsed = keys.is_endorsed,
) -> Grant:
    """The grant for a write to `affiliate_id`; raises NotAuthenticated or NotPermitted.

    Locked cluster: signed by an endorsed key, and only the key's own (bound) affiliate.
    Open cluster: a bound affiliate needs its own key's signature; any other is unsigned as
    with Talos (a proof on it is ignored: the id does not say whose it is).
    """
    cluster_key = keys.cluster_key_of(cluster_id)
    node_key = keys.node_key_of(affiliate_id)
    if cluster_key == b"":
        raise NotPermitted(
            f"cluster ID starts with {keys.LOCKED_PREFIX!r} but does not name a cluster key"
        )
    if node_key == b"":
        raise NotPermitted(
            f"affiliate ID starts with {keys.NODE_PREFIX!r} but does not name a node key"
        )
    if cluster_key is None and node_key is None:
        return Grant(None)
    if proof is None:
        if cluster_key is not None:
            raise NotAuthenticated("cluster is locked: writes must be signed by a member node")
        raise NotAuthenticated("affiliate is bound to a node key: writes must be signed by it")
    if node_key is None:
        raise NotPermitted("in a locked cluster a node may only write its own bound affiliate")
    if proof.node_key != node_key:
        raise NotPermitted("a node may only write its own affiliate (the key does not match)")
    if abs(now - proof.created) > CLOCK_WINDOW:
        raise NotAuthenticated(
            f"signature created {proof.created}, outside the {CLOCK_WINDOW} s clock window"
        )
    if cluster_key is not None and not (
        proof.endorsement is not None and endorsed(cluster_key, node_key, proof.endorsement)
    ):
        raise NotAuthenticated("node key is not endorsed by the cluster key")
    if not keys.verify(node_key, proof.signature, proof.base):
        raise NotAuthenticated("signature does not verify against the node key")
    return Grant(node_key, proof.record_digest)


def check_view(view: ClusterView, affiliate_id: str, grant: Grant, *, deleting: bool) -> None:
    """Rules that depend on the cluster's state; raises NotPermitted.

    A revoked key is refused for good. A signed delete names the record it removes (a digest
    of its data), so a copied delete replayed after the node published again fails.
    """
    if grant.node_key is None:
        return
    if grant.node_key in view.revoked:
        raise NotPermitted("node key was revoked by the cluster")
    if not deleting:
        return
    current = view.affiliates.get(affiliate_id)
    if current is not None and grant.record_digest != record_digest(current.data):
        raise NotPermitted("delete names a record that is not the current one (replayed?)")


def check_revocation(cluster_id: str, node_key: bytes, signature: bytes) -> None:
    """Raises unless `signature` is this locked cluster's revocation of `node_key`."""
    cluster_key = keys.cluster_key_of(cluster_id)
    if not cluster_key:
        raise NotPermitted("only a locked cluster can revoke node keys")
    if not keys.is_revocation(cluster_key, node_key, signature):
        raise NotAuthenticated("revocation is not signed by the cluster key")

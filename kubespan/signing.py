"""How this node signs its discovery writes, and how the cluster cuts a node out.

A node whose id is bound to its signing key (kubespan/identity.py) signs every write; in a
locked cluster it must, and carries the endorsement any holder of the cluster secret can make.
"""

from __future__ import annotations

from discovery.client.signing import RequestSigner
from kubespan.identity import Identity, IdentityError
from membership import keys


def node_signer(identity: Identity, cluster_id: str, secret: bytes) -> RequestSigner | None:
    """The signer for this node's writes, None when it writes unsigned (a Talos-style id in
    an open cluster). Raises IdentityError when the cluster is locked and the node cannot
    sign (its id predates signing)."""
    locked = keys.cluster_key_of(cluster_id) is not None
    if identity.signing_key is None or not identity.bound:
        if locked:
            raise IdentityError(
                f"node id {identity.node_id} is not bound to a signing key, and the cluster "
                "is locked: remove the node-id file from the state dir to take a bound id"
            )
        return None
    return RequestSigner(identity.signing_key, cluster_secret=secret if locked else None)


def locked_cluster_id(secret: bytes) -> str:
    """The locked cluster id that `secret` makes (kubespan gen-secrets' default)."""
    return keys.locked_cluster_id(keys.public_bytes(keys.cluster_signing_key(secret)))


def revocation(secret: bytes, node_id: str) -> tuple[bytes, bytes]:
    """(node key, the cluster's revocation of it) for a bound node id; ValueError otherwise."""
    node_key = keys.node_key_of(node_id)
    if not node_key:
        raise ValueError(
            f"{node_id!r} is not a node id bound to a key ({keys.NODE_PREFIX}...): only "
            "nodes that sign their writes can be cut out"
        )
    return node_key, keys.revoke(keys.cluster_signing_key(secret), node_key)

"""Keys, clusters and signers for the signed-write tests (a fixed secret, fresh node keys)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from discovery.client.signing import RequestSigner
from membership import keys
from membership.signatures import PUT_COMPONENTS, SignedRequest, affiliate_path, read_proof

SECRET = bytes(range(32))
CLUSTER_KEY = keys.cluster_signing_key(SECRET)
LOCKED = keys.locked_cluster_id(keys.public_bytes(CLUSTER_KEY))
OPEN = "T3BlbiBjbHVzdGVyIGlkIG9mIGEgVGFsb3Mgbm9kZSEhISE="


def member(clock: Callable[[], float] = time.time) -> RequestSigner:
    """A signer for a fresh node the cluster endorses."""
    return RequestSigner(Ed25519PrivateKey.generate(), cluster_secret=SECRET, clock=clock)


def stranger() -> RequestSigner:
    """A signer with a key of its own and no endorsement (it does not know the secret)."""
    return RequestSigner(Ed25519PrivateKey.generate())


def revocation(signer: RequestSigner) -> tuple[bytes, bytes]:
    """(node key, the cluster's revocation of it)."""
    node_key = keys.node_key_of(signer.node_id)
    assert node_key
    return node_key, keys.revoke(CLUSTER_KEY, node_key)


def put_proof(signer: RequestSigner, cluster_id: str, body: bytes = b"{}") -> SignedRequest:
    """The proof a front end would hand the core for `signer`'s PUT of its own record."""
    path = affiliate_path(cluster_id, signer.node_id)
    fields = signer.http_put(path, body)
    values = {"@method": "PUT", "@path": path, **fields}
    return read_proof(
        fields["signature-input"],
        fields["signature"],
        fields.get("kubespan-endorsement"),
        values.get,
        PUT_COMPONENTS,
    )

"""Keys, clusters and signers for the signed-write tests (a fixed secret, fresh node keys)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from discovery.client.signing import RequestSigner
from membership import keys

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

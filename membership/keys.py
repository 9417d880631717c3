"""Signing keys and self-certifying ids: derivations only, no storage and no randomness.

- The cluster signing key is Ed25519 with a seed derived from the cluster secret by
  HKDF-SHA256 (no salt, info `CLUSTER_KEY_INFO`): every holder of the secret makes the same
  key locally, and the secret never leaves the nodes.
- A *locked* cluster's id is `LOCKED_PREFIX` + base32 (lowercase, unpadded) of the cluster
  public key. A Talos cluster id is standard base64 of random bytes and can never contain the
  ".", so the two forms cannot collide and the id alone tells which rules apply.
- A *bound* affiliate id is `NODE_PREFIX` + base32 of the node's Ed25519 public key. Talos
  node ids are base62 and never contain a ".". Only the key's holder can write it.
- An endorsement is the cluster key's signature over (context, cluster key, node key); a
  revocation the same over a different context. Distinct contexts mean one can never be
  replayed as the other.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CLUSTER_KEY_INFO = b"kubespan cluster signing key v1"
LOCKED_PREFIX = "kc1."
NODE_PREFIX = "kn1."
ENDORSE_CONTEXT = b"kubespan endorsement v1\x00"
REVOKE_CONTEXT = b"kubespan revocation v1\x00"
KEY_SIZE = 32
SIGNATURE_SIZE = 64


def cluster_signing_key(secret: bytes) -> Ed25519PrivateKey:
    """The cluster's Ed25519 key derived from its 32-byte secret; deterministic."""
    seed = HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=CLUSTER_KEY_INFO).derive(
        secret
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of `key`'s public half."""
    return key.public_key().public_bytes_raw()


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


# Ids repeat on every write of a node (and base32 decoding is pure Python): parse each once.
@lru_cache(maxsize=8192)
def _key_in(value: str, prefix: str) -> bytes | None:
    if not value.startswith(prefix):
        return None
    text = value[len(prefix) :]
    # 32 bytes are 52 base32 characters; anything else is not this form (and is refused by
    # the rules, since the prefix already claims it).
    if len(text) != 52 or text != text.lower():
        return b""
    try:
        raw = base64.b32decode(text.upper() + "====")
    except (binascii.Error, ValueError):
        return b""
    return raw if _b32(raw) == text else b""


def locked_cluster_id(cluster_public: bytes) -> str:
    """The id of the locked cluster whose public key is `cluster_public`."""
    return LOCKED_PREFIX + _b32(cluster_public)


def node_affiliate_id(node_public: bytes) -> str:
    """The bound affiliate id of the node whose public key is `node_public`."""
    return NODE_PREFIX + _b32(node_public)


def cluster_key_of(cluster_id: str) -> bytes | None:
    """The cluster public key a locked id names; None for an open id, b"" for a broken one."""
    return _key_in(cluster_id, LOCKED_PREFIX)


def node_key_of(affiliate_id: str) -> bytes | None:
    """The node public key a bound id names; None for a plain id, b"" for a broken one."""
    return _key_in(affiliate_id, NODE_PREFIX)


def endorse(cluster_key: Ed25519PrivateKey, node_public: bytes) -> bytes:
    """The cluster's endorsement of a node key (64 bytes); any holder of the secret can make it."""
    return cluster_key.sign(ENDORSE_CONTEXT + public_bytes(cluster_key) + node_public)


def revoke(cluster_key: Ed25519PrivateKey, node_public: bytes) -> bytes:
    """The cluster's revocation of a node key (64 bytes)."""
    return cluster_key.sign(REVOKE_CONTEXT + public_bytes(cluster_key) + node_public)


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is `public`'s Ed25519 signature of `message`; never raises."""
    if len(public) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def is_endorsed(cluster_public: bytes, node_public: bytes, endorsement: bytes) -> bool:
    """True if `endorsement` is the cluster's endorsement of `node_public`."""
    return verify(cluster_public, endorsement, ENDORSE_CONTEXT + cluster_public + node_public)


def is_revocation(cluster_public: bytes, node_public: bytes, signature: bytes) -> bool:
    """True if `signature` is the cluster's revocation of `node_public`."""
    return verify(cluster_public, signature, REVOKE_CONTEXT + cluster_public + node_public)

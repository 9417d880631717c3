"""Key derivations and self-certifying ids: known-answer vectors other implementations can
check against, and the properties the access rules rely on."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from membership import keys
from membership.secrets import b62encode, new_cluster_id

# Vector: cluster secret 00 01 .. 1f; node key seed 42 42 .. 42.
SECRET = bytes(range(32))
NODE_SEED = bytes([0x42]) * 32
CLUSTER_SEED = "170caad0df64164c50885a6493adc9e237ebd54f0745be0fc541239d4af38bc8"
CLUSTER_PUBLIC = "a8d6baf73b93cba79468bf4a419c8024d9a418f7560c6658d6e6963a3d25f0de"
CLUSTER_ID = "kc1.vdllv5z3spf2pfdix5fedheaetm2ighxkyggmwgw42ldupjf6dpa"
NODE_PUBLIC = "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"
AFFILIATE_ID = "kn1.efjprum3peosirjsilqv6lvlns3476t3njpngaexsyhangeb3mja"
ENDORSEMENT = (
    "aed58963f5721d88c71118875a635d16fd2a7024784b6abf0ee8689438aabd60"
    "96a3963523f14050545b37a2ae279dc3c70ee3e7a7beaac9ac749a7ea7044d02"
)
REVOCATION = (
    "ce86a90830d1d74a24092aaf81a25cea2855d74cd8f467a8e61c9039a5324d86"
    "9b23d1cc6ff484eb9d6c251494eb1402ef7cb2fe3103bc7f48feb84b44e9bb01"
)


def test_known_answers() -> None:
    cluster = keys.cluster_signing_key(SECRET)
    assert cluster.private_bytes_raw().hex() == CLUSTER_SEED
    assert keys.public_bytes(cluster).hex() == CLUSTER_PUBLIC
    assert keys.locked_cluster_id(bytes.fromhex(CLUSTER_PUBLIC)) == CLUSTER_ID
    node = Ed25519PrivateKey.from_private_bytes(NODE_SEED)
    assert keys.public_bytes(node).hex() == NODE_PUBLIC
    assert keys.node_affiliate_id(bytes.fromhex(NODE_PUBLIC)) == AFFILIATE_ID
    assert keys.endorse(cluster, bytes.fromhex(NODE_PUBLIC)).hex() == ENDORSEMENT
    assert keys.revoke(cluster, bytes.fromhex(NODE_PUBLIC)).hex() == REVOCATION


def test_ids_name_their_keys() -> None:
    assert keys.cluster_key_of(CLUSTER_ID) == bytes.fromhex(CLUSTER_PUBLIC)
    assert keys.node_key_of(AFFILIATE_ID) == bytes.fromhex(NODE_PUBLIC)


def test_broken_ids_of_the_form_name_no_key() -> None:
    for broken in (
        "kc1.",
        CLUSTER_ID[:-1],
        CLUSTER_ID.upper().replace("KC1.", "kc1."),
        CLUSTER_ID[:-1] + "1",  # not base32
        CLUSTER_ID[:-1] + "b",  # non-zero padding bits: not the canonical encoding
    ):
        assert keys.cluster_key_of(broken) == b"", broken
    assert keys.node_key_of("kn1.x") == b""


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_talos_ids_are_never_locked_or_bound(random: bytes) -> None:
    assert keys.cluster_key_of(new_cluster_id(random)) is None
    assert keys.node_key_of(b62encode(random)) is None
    assert keys.cluster_key_of(base64.b64encode(random).decode()) is None


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_ids_round_trip(public: bytes) -> None:
    assert keys.cluster_key_of(keys.locked_cluster_id(public)) == public
    assert keys.node_key_of(keys.node_affiliate_id(public)) == public


def test_endorsement_and_revocation_are_not_interchangeable() -> None:
    cluster = keys.cluster_signing_key(SECRET)
    public, node = keys.public_bytes(cluster), bytes.fromhex(NODE_PUBLIC)
    endorsement, revocation = keys.endorse(cluster, node), keys.revoke(cluster, node)
    assert keys.is_endorsed(public, node, endorsement)
    assert keys.is_revocation(public, node, revocation)
    assert not keys.is_endorsed(public, node, revocation)
    assert not keys.is_revocation(public, node, endorsement)
    other = keys.public_bytes(keys.cluster_signing_key(bytes(32)))
    assert not keys.is_endorsed(other, node, endorsement)


def test_verify_never_raises() -> None:
    assert not keys.verify(b"short", bytes(64), b"m")
    assert not keys.verify(bytes(32), b"short", b"m")
    assert not keys.verify(bytes(32), bytes(64), b"m")

"""The RFC 9421 subset: signature bases byte for byte, and strict parsing of what we sign."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from membership import keys
from membership.signatures import (
    DELETE_COMPONENTS,
    PUT_COMPONENTS,
    SignatureFormatError,
    affiliate_path,
    binary,
    digest_header,
    parse_binary,
    parse_digest,
    parse_signature,
    parse_signature_input,
    read_proof,
    record_digest,
    sign,
    signature_base,
    signature_params,
    update_content,
)

# RFC 9421 appendix B.1.4 (test-key-ed25519) and B.2.6 (its signature, deterministic).
RFC_KEY = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
    b"-----END PRIVATE KEY-----\n"
)
RFC_SIGNATURE = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)
NODE = Ed25519PrivateKey.from_private_bytes(bytes([0x42]) * 32)
NODE_ID = keys.node_affiliate_id(keys.public_bytes(NODE))


def test_signature_base_matches_rfc_9421_example() -> None:
    key = load_pem_private_key(RFC_KEY, None)
    assert isinstance(key, Ed25519PrivateKey)
    values = [
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("@method", "POST"),
        ("@path", "/foo"),
        ("@authority", "example.com"),
        ("content-type", "application/json"),
        ("content-length", "18"),
    ]
    params = (
        '("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"'
    )
    base = signature_base(values, params)
    assert base.endswith(b'\n"@signature-params": ' + params.encode())
    assert base64.b64encode(key.sign(base)).decode() == RFC_SIGNATURE


def _put_values() -> list[tuple[str, str]]:
    return [("@method", "PUT"), ("@path", "/v1/clusters/c/affiliates/a"), ("content-digest", "d")]


def test_sign_then_read_gives_a_verifiable_proof() -> None:
    values = dict(_put_values())
    signature_input, signature = sign(NODE, _put_values(), created=1700000000)
    assert signature_input == (
        'ks=("@method" "@path" "content-digest");created=1700000000;'
        f'keyid="{NODE_ID}";alg="ed25519"'
    )
    proof = read_proof(signature_input, signature, binary(b"e" * 64), values.get, PUT_COMPONENTS)
    assert proof.node_key == keys.public_bytes(NODE)
    assert proof.endorsement == b"e" * 64
    assert proof.created == 1700000000
    assert proof.record_digest is None
    assert keys.verify(proof.node_key, proof.signature, proof.base)
    # The base is rebuilt from the request's own values: a changed path no longer verifies.
    values["@path"] = "/v1/clusters/c/affiliates/other"
    moved = read_proof(signature_input, signature, None, values.get, PUT_COMPONENTS)
    assert moved.endorsement is None
    assert not keys.verify(moved.node_key, moved.signature, moved.base)


def test_delete_proof_carries_the_record_digest() -> None:
    digest = digest_header(b"record")
    values = {"@method": "DELETE", "@path": "/p", "kubespan-record-digest": digest}
    signature_input, signature = sign(NODE, [(c, values[c]) for c in DELETE_COMPONENTS], created=5)
    proof = read_proof(signature_input, signature, None, values.get, DELETE_COMPONENTS)
    assert proof.record_digest == record_digest(b"record") == hashlib.sha256(b"record").digest()


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ('sig=("@method");created=1;keyid="k"', "labelled"),
        ("ks", "labelled"),
        ("ks=created=1", "list of components"),
        ('ks=("@method");created=1;created=2;keyid="k"', "repeated"),
        ('ks=("@method");created=1;keyid="k";junk', "malformed"),
        ('ks=("@method");created=1;keyid="k";alg="rsa-pss-sha512"', "alg"),
        ('ks=("@method");keyid="k"', "integer created"),
        ('ks=("@method");created="1";keyid="k"', "integer created"),
        ('ks=("@method");created=1;keyid=2', "integer created"),
    ],
)
def test_malformed_signature_input_is_refused(header: str, problem: str) -> None:
    with pytest.raises(SignatureFormatError, match=problem):
        parse_signature_input(header)


def test_parsed_input_keeps_the_params_exactly() -> None:
    params = signature_params(PUT_COMPONENTS, created=7, keyid="kid")
    parsed = parse_signature_input(f"ks={params}")
    assert (parsed.components, parsed.created, parsed.keyid, parsed.params) == (
        PUT_COMPONENTS,
        7,
        "kid",
        params,
    )
    assert parse_signature_input('ks=();created=-1;keyid=""').components == ()


def test_read_proof_refusals() -> None:
    values = dict(_put_values())
    signature_input, signature = sign(NODE, _put_values(), created=1)
    with pytest.raises(SignatureFormatError, match="cover exactly"):
        read_proof(signature_input, signature, None, values.get, DELETE_COMPONENTS)
    plain = signature_input.replace(NODE_ID, "talosnodeid")
    with pytest.raises(SignatureFormatError, match="keyid"):
        read_proof(plain, signature, None, values.get, PUT_COMPONENTS)
    del values["content-digest"]
    with pytest.raises(SignatureFormatError, match="missing"):
        read_proof(signature_input, signature, None, values.get, PUT_COMPONENTS)


def test_binary_and_digest_parsing() -> None:
    assert parse_signature("ks=:AAE=:") == b"\x00\x01"
    assert parse_binary(binary(b"xyz"), "x") == b"xyz"
    for bad in ("AAE=", ":A:", ":AAE=", ":*:"):
        with pytest.raises(SignatureFormatError, match="byte sequence"):
            parse_binary(bad, "x")
    with pytest.raises(SignatureFormatError, match="labelled"):
        parse_signature("sig=:AAE=:")
    assert parse_digest(digest_header(b"x")) == hashlib.sha256(b"x").digest()
    with pytest.raises(SignatureFormatError, match="sha-256"):
        parse_digest("sha-512=:AAE=:")
    with pytest.raises(SignatureFormatError, match="32 bytes"):
        parse_digest("sha-256=:AAE=:")
    with pytest.raises(SignatureFormatError, match="32 bytes"):
        parse_digest("sha-256=:A:")


def test_affiliate_path_escapes_every_reserved_character() -> None:
    assert affiliate_path("a/b+c=", "n 1") == "/v1/clusters/a%2Fb%2Bc%3D/affiliates/n%201"


def test_update_content_is_canonical() -> None:
    content = update_content(b"d", [b"e1", b"e"], 30.0004)
    assert content == (
        b"kubespan update v1\x00\x01\x00\x00\x00\x01d\x00\x00\x00\x02"
        b"\x00\x00\x00\x02e1\x00\x00\x00\x01e" + (30000).to_bytes(8, "big")
    )
    # "No data" and "empty data" differ: one keeps the stored data, the other clears it.
    assert update_content(None, [], 1) != update_content(b"", [], 1)


def test_signed_put_known_answer() -> None:
    """The example of docs/security.md, byte for byte."""
    cluster = keys.cluster_signing_key(bytes(range(32)))
    cluster_id = keys.locked_cluster_id(keys.public_bytes(cluster))
    path = f"/v1/clusters/{cluster_id}/affiliates/{NODE_ID}"
    body = b'{"endpoints":["ZXA="],"ttl":300.0,"data":"c2VhbGVk"}'
    digest = digest_header(body)
    assert digest == "sha-256=:kozVgpeh7YaaC4Rx7DX09QiCnyg2vTsvyWwqycPXCcg=:"
    values = [("@method", "PUT"), ("@path", path), ("content-digest", digest)]
    _, signature = sign(NODE, values, created=1700000000)
    assert signature == (
        "ks=:NTdwuN78A6FX39t7/ELRR52aTCiK5794ptxYE/NMAgFWToKayVK61P204KR6osuqSRb1Ks2elo7rDLWWwjS6CA==:"
    )
    assert update_content(b"sealed", [b"ep"], 300.0).hex() == (
        "6b7562657370616e207570646174652076310001000000067365616c65640000000100000002"
        "657000000000000493e0"
    )

from __future__ import annotations

import base64
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership.secrets import (
    b62decode,
    b62encode,
    decode_cluster_secret,
    is_valid_cluster_secret,
    new_cluster_id,
    new_cluster_secret,
    new_node_id,
)

ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits


def _go_encode_v2(src: bytes) -> str:
    # Line-by-line transliteration of jxskiss/base62 encoder.encodeV2 + get6bits (base62.go),
    # kept deliberately close to the Go to cross-check the integer-based port.
    pos = len(src) * 8
    out = []
    while pos > 0:
        size = 6
        r = pos & 0x7
        i = pos >> 3
        if r == 0:
            i, r = i - 1, 8
        b = src[i] >> (8 - r)
        if r < 6 and i > 0:
            b |= (src[i - 1] << r) & 0xFF
        b &= 0x3F
        if b & 0x1E == 0x1E:
            if pos > 6 or b > 0x1F:
                size = 5
            b &= 0x1F
        out.append(ALPHABET[b])
        pos -= size
    return "".join(out)


def _go_encode_v1(src: bytes) -> str:
    # Transliteration of the older encoder.next(), which jxskiss keeps byte-compatible.
    enc_pos = len(src) * 8
    out = []
    while True:
        i = j = 0
        pos = enc_pos - 6
        if pos <= 0:
            pos = 0
            blen = enc_pos
        else:
            i, j = pos // 8, pos % 8
            blen = min((i + 1) * 8 - pos, 6)
        shift = 8 - j - blen
        b = (src[i] >> shift) & ((1 << blen) - 1)
        if blen < 6 and pos > 0:
            blen1 = 6 - blen
            b = (b << blen1) | (src[i + 1] >> (8 - blen1))
        if b & 0x1E == 0x1E:
            if pos > 0 or b > 0x1F:
                pos += 1
            b &= 0x1F
        enc_pos = pos
        out.append(ALPHABET[b])
        if pos <= 0:
            return "".join(out)


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        # Traced by hand through encodeV2: 6 bits at a time from the low end.
        (b"", ""),
        (b"\x00", "AA"),  # 000000 -> A, then the top 2 bits 00 -> A
        (b"\x01", "BA"),  # 000001 -> B, 00 -> A
        (b"\xff", "fH"),  # 111111 matches the compact mask: emit 11111 (f), eat 5 bits; 111 -> H
        (b"\x3e", "eB"),  # low 111110 is compact: emit 11110 (e), eat 5; top 001 -> B
        (bytes(range(32)), "fwjO4YDNyAjLsoCKmQiIg4BHaghFUIBEOwgCIYABCAA"),
    ],
)
def test_b62_known_answers(data: bytes, encoded: str) -> None:
    assert b62encode(data) == encoded
    assert b62decode(encoded) == data


@given(st.binary(max_size=80))
def test_b62_matches_go_transliterations(data: bytes) -> None:
    encoded = b62encode(data)
    assert encoded == _go_encode_v2(data)
    if data:
        assert encoded == _go_encode_v1(data)


@given(st.binary(max_size=80) | st.binary(min_size=32, max_size=32))
def test_b62_round_trips_within_the_alphabet(data: bytes) -> None:
    encoded = b62encode(data)
    assert set(encoded) <= set(ALPHABET)
    assert b62decode(encoded) == data


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33, 100])
@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_b62_round_trips_edge_fills(size: int, fill: int) -> None:
    data = bytes([fill]) * size
    assert b62decode(b62encode(data)) == data


@pytest.mark.parametrize(("text", "position"), [("AB-C", 2), ("+", 0), ("abc=", 3), ("é", 0)])
def test_b62decode_rejects_foreign_characters(text: str, position: int) -> None:
    with pytest.raises(ValueError, match=f"at input byte {position}"):
        b62decode(text)


def test_node_id_is_base62_of_32_random_bytes() -> None:
    assert new_node_id(bytes(range(32))) == "fwjO4YDNyAjLsoCKmQiIg4BHaghFUIBEOwgCIYABCAA"


@given(st.binary(min_size=32, max_size=32))
def test_node_ids_are_url_safe_and_short(random32: bytes) -> None:
    node_id = new_node_id(random32)
    assert set(node_id) <= set(ALPHABET)
    assert 43 <= len(node_id) <= 52
    assert b62decode(node_id) == random32


def test_cluster_id_and_secret_are_standard_base64() -> None:
    random32 = bytes([0xFB]) * 32  # has "+" and "/" in base64, unlike the URL-safe alphabet
    expected = base64.standard_b64encode(random32).decode()
    assert "+" in expected or "/" in expected
    assert new_cluster_id(random32) == expected
    assert new_cluster_secret(random32) == expected
    assert decode_cluster_secret(new_cluster_secret(random32)) == random32


@pytest.mark.parametrize("make", [new_node_id, new_cluster_id, new_cluster_secret])
@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_generators_need_exactly_32_random_bytes(make: Callable[[bytes], str], size: int) -> None:
    with pytest.raises(ValueError, match=f"exactly 32 random bytes, got {size}"):
        make(bytes(size))


@pytest.mark.parametrize(
    ("secret", "valid"),
    [
        (base64.b64encode(bytes(32)).decode(), True),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nAAAAAAAAAAAAAAA=\n", True),  # Go ignores CR/LF
        (base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode(), False),
        (base64.b64encode(bytes(32)).decode().rstrip("="), False),
        (base64.b64encode(bytes(32)).decode() + "==", False),
        ("AAAA==", False),  # padding after a full quantum: Python tolerates it, Go does not
        (base64.b64encode(bytes(24)).decode(), False),
        ("", False),
        ("not base64 at all", False),
    ],
)
def test_cluster_secret_validation(secret: str, valid: bool) -> None:
    assert is_valid_cluster_secret(secret) is valid
    if valid:
        assert decode_cluster_secret(secret) == bytes(32)
    else:
        with pytest.raises(ValueError, match="cluster secret"):
            decode_cluster_secret(secret)

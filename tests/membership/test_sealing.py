from __future__ import annotations

import base64
import contextlib
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from membership.errors import RecordError, SealingError
from membership.record import (
    AffiliateRecord,
    DecodedAffiliate,
    EndpointAddr,
    IPAddress,
    IPNetwork,
    KubeSpanInfo,
)
from membership.sealing import (
    ClusterKey,
    open_affiliate,
    open_data,
    open_endpoint,
    open_endpoint_addr,
    open_record,
    seal_data,
    seal_endpoint,
    seal_endpoint_addr,
    seal_record,
)
from membership.talos_codec import encode_affiliate, encode_endpoint

SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes(range(32))
KEY = ClusterKey(SECRET)
OTHER_KEY = ClusterKey(base64.b64encode(bytes(range(1, 33))).decode())
NONCE = bytes.fromhex("cafebabefacedbaddecaf888")

RECORD = AffiliateRecord(
    node_id="fwjO4YDNyAjLsoCKmQiIg4BHaghFUIBEOwgCIYABCAA",
    addresses=(IPv4Address("10.5.0.2"),),
    nodename="worker-1",
    machine_type="worker",
    kubespan=KubeSpanInfo(
        public_key="PLPNBddmTgHJhtw0vxltq1ZBdPP9RNOEUd5JjJZzBRY=",
        address=IPv6Address("fd50:8d60:4238:6302:f857:23ff:fe21:d1e0"),
    ),
)
# nonce(12) || ciphertext(135, the length of encode_affiliate(RECORD)) || tag(16)
SEALED_RECORD = bytes.fromhex(
    "cafebabefacedbaddecaf888"
    "8088c651c0357b420245249c1151fa504e6bad00"
    "b6500d400c976516d6cf30b6ef158e31a697003b67196b297391246f5c54ab73"
    "abfde7a248f703118fceb1350ef035173d7e1dd57c8a6a4ee65c945f75e46137"
    "104db5789adb0c1c60e8adb083139badb4efe6b44f3b6a39f2c2439ba0e84d54"
    "a7d88838709f29780424e36d3a0fe4eb84e7d99d59a0308517cc5df166f9d9fb"
    "3a8b9d"
)

ENDPOINT_V4 = EndpointAddr(IPv4Address("10.0.0.2"), 51820)
SEALED_ENDPOINT_V4 = bytes.fromhex("45c55198f8ad5b07dd423e192f7e13e8")
ENDPOINT_V6 = EndpointAddr(IPv6Address("2001:db8::1"), 51820)
SEALED_ENDPOINT_V6 = bytes.fromhex(
    "e2702633ca89239d5ee036a316dde237d604c19a74d2f45c1e624c2d38c4cca0"
)


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


# --- the key --------------------------------------------------------------------------------


def test_cluster_key_exposes_raw_bytes_and_secret() -> None:
    assert KEY.raw == bytes(range(32))
    assert KEY.secret == SECRET
    assert KEY.wireguard_psk == SECRET


def test_cluster_key_never_shows_key_material() -> None:
    assert repr(KEY) == "ClusterKey(<redacted>)"
    assert SECRET not in str(KEY)


def test_cluster_keys_compare_by_key_bytes() -> None:
    same = ClusterKey(SECRET[:20] + "\n" + SECRET[20:])
    assert same == KEY
    assert hash(same) == hash(KEY)
    assert same.secret != SECRET
    assert same.wireguard_psk == SECRET
    assert KEY != OTHER_KEY
    assert KEY != SECRET


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "must decode to 32 bytes, got 0"),
        (base64.b64encode(bytes(16)).decode(), "must decode to 32 bytes, got 16"),
        (base64.b64encode(bytes(33)).decode(), "must decode to 32 bytes, got 33"),
        (SECRET.rstrip("="), "not valid standard base64"),
        (SECRET + "=", "not valid standard base64"),
        (SECRET.replace("A", "-", 1), "not valid standard base64"),
        (" " + SECRET, "not valid standard base64"),
        ("é" * 44, "not valid standard base64"),
    ],
)
def test_cluster_key_rejects_bad_secrets(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterKey(secret)


# --- data: AES-256-GCM ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plaintext", "sealed"),
    [
        # McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13 and 14.
        (b"", "530f8afbc74536b9a963b4f1c4cb738b"),
        (bytes(16), "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"),
    ],
)
def test_seal_data_matches_published_gcm_vectors(plaintext: bytes, sealed: str) -> None:
    zero_key = ClusterKey(base64.b64encode(bytes(32)).decode())
    blob = seal_data(zero_key, plaintext, bytes(12))
    assert blob == bytes(12) + bytes.fromhex(sealed)
    assert open_data(zero_key, blob) == plaintext


def test_sealed_record_is_known_bytes() -> None:
    assert seal_record(KEY, RECORD, NONCE) == SEALED_RECORD
    assert open_record(KEY, SEALED_RECORD) == RECORD


def _gf_mult(x: int, y: int) -> int:
    # NIST SP 800-38D algorithm 1, on big-endian integers.
    r = 0xE1 << 120
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ r if v & 1 else v >> 1
    return z


def test_sealed_record_matches_gcm_built_from_the_block_cipher() -> None:
    # Rebuild GCM from raw AES blocks so the known answer does not only echo AESGCM.
    key = KEY.raw
    plaintext = encode_affiliate(RECORD)
    ciphertext = bytearray()
    for i in range(0, len(plaintext), 16):
        counter = NONCE + (i // 16 + 2).to_bytes(4, "big")
        stream = _aes_block(key, counter)
        ciphertext += bytes(p ^ s for p, s in zip(plaintext[i : i + 16], stream, strict=False))
    h = int.from_bytes(_aes_block(key, bytes(16)), "big")
    padded = bytes(ciphertext) + bytes(-len(ciphertext) % 16)
    lengths = (0).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    ghash = 0
    for i in range(0, len(padded + lengths), 16):
        ghash = _gf_mult(ghash ^ int.from_bytes((padded + lengths)[i : i + 16], "big"), h)
    j0 = int.from_bytes(_aes_block(key, NONCE + (1).to_bytes(4, "big")), "big")
    tag = (ghash ^ j0).to_bytes(16, "big")
    assert NONCE + bytes(ciphertext) + tag == SEALED_RECORD


def test_seal_data_requires_a_12_byte_nonce() -> None:
    with pytest.raises(ValueError, match="nonce must be 12 bytes, got 16"):
        seal_data(KEY, b"x", bytes(16))


@pytest.mark.parametrize("size", [0, 1, 12, 27])
def test_open_data_rejects_short_blobs(size: int) -> None:
    with pytest.raises(SealingError, match="too short"):
        open_data(KEY, SEALED_RECORD[:size])


def test_open_data_rejects_wrong_key_and_any_tampering() -> None:
    with pytest.raises(SealingError, match="authentication"):
        open_data(OTHER_KEY, SEALED_RECORD)
    for i in range(len(SEALED_RECORD)):
        tampered = bytearray(SEALED_RECORD)
        tampered[i] ^= 0x01
        with pytest.raises(SealingError):
            open_record(KEY, bytes(tampered))
    with pytest.raises(SealingError):
        open_record(KEY, SEALED_RECORD[:-1])


def test_open_record_raises_record_error_for_authentic_non_records() -> None:
    blob = seal_data(KEY, b"\x12\x05hello", NONCE)  # addresses = 5 bytes
    with pytest.raises(RecordError):
        open_record(KEY, blob)


# --- endpoints: AES-ECB ---------------------------------------------------------------------


def test_sealed_endpoints_are_known_bytes_of_16_and_32() -> None:
    assert seal_endpoint_addr(KEY, ENDPOINT_V4) == SEALED_ENDPOINT_V4
    assert seal_endpoint_addr(KEY, ENDPOINT_V6) == SEALED_ENDPOINT_V6
    assert open_endpoint_addr(KEY, SEALED_ENDPOINT_V4) == ENDPOINT_V4
    assert open_endpoint_addr(KEY, SEALED_ENDPOINT_V6) == ENDPOINT_V6


def test_sealed_endpoint_is_length_prefixed_zero_padded_ecb() -> None:
    pb = encode_endpoint(ENDPOINT_V6)
    framed = bytes([len(pb)]) + pb + bytes(32 - 1 - len(pb))
    blocks = [_aes_block(KEY.raw, framed[i : i + 16]) for i in (0, 16)]
    assert b"".join(blocks) == SEALED_ENDPOINT_V6


@pytest.mark.parametrize(("size", "sealed_size"), [(0, 16), (15, 16), (16, 32), (255, 256)])
def test_seal_endpoint_pads_to_blocks(size: int, sealed_size: int) -> None:
    plaintext = bytes(range(size))
    blob = seal_endpoint(KEY, plaintext)
    assert len(blob) == sealed_size
    assert open_endpoint(KEY, blob) == plaintext


def test_seal_endpoint_rejects_plaintext_longer_than_the_length_byte() -> None:
    with pytest.raises(ValueError, match="too long: 256 bytes"):
        seal_endpoint(KEY, bytes(256))


@pytest.mark.parametrize("size", [0, 1, 15, 17, 31])
def test_open_endpoint_rejects_partial_blocks(size: int) -> None:
    with pytest.raises(SealingError, match="positive multiple of 16"):
        open_endpoint(KEY, bytes(size))


def test_open_endpoint_rejects_length_byte_past_the_end() -> None:
    blob = _aes_block(KEY.raw, bytes([16]) + bytes(15))
    with pytest.raises(SealingError, match="length byte exceeds"):
        open_endpoint(KEY, blob)
    # 15 is the largest length one block can hold.
    assert open_endpoint(KEY, _aes_block(KEY.raw, bytes([15]) + bytes(15))) == bytes(15)


def test_open_endpoint_rejects_non_zero_padding() -> None:
    blob = _aes_block(KEY.raw, bytes([1, 0xAA, 0, 1]) + bytes(12))
    with pytest.raises(SealingError, match="padding"):
        open_endpoint(KEY, blob)


def test_endpoints_sealed_with_another_key_do_not_open() -> None:
    for blob in (SEALED_ENDPOINT_V4, SEALED_ENDPOINT_V6):
        with pytest.raises((SealingError, RecordError)):
            open_endpoint_addr(OTHER_KEY, blob)


def test_endpoint_sealing_is_deterministic_so_the_server_can_dedupe() -> None:
    assert seal_endpoint_addr(KEY, ENDPOINT_V4) == seal_endpoint_addr(KEY, ENDPOINT_V4)
    assert seal_endpoint_addr(KEY, ENDPOINT_V4) != seal_endpoint_addr(OTHER_KEY, ENDPOINT_V4)


# --- open_affiliate -------------------------------------------------------------------------


def test_open_affiliate_keeps_good_endpoints_in_order_and_drops_bad_ones() -> None:
    blobs = [
        SEALED_ENDPOINT_V6,
        b"",  # not a block
        bytes(16),  # garbage block
        seal_endpoint(KEY, b"\x0a\x03abc"),  # authentic framing, 3-byte IP
        SEALED_ENDPOINT_V4,
        seal_endpoint_addr(OTHER_KEY, ENDPOINT_V4),
    ]
    assert open_affiliate(KEY, SEALED_RECORD, blobs) == DecodedAffiliate(
        record=RECORD, endpoints=(ENDPOINT_V6, ENDPOINT_V4)
    )


def test_open_affiliate_raises_for_bad_data() -> None:
    with pytest.raises(SealingError):
        open_affiliate(KEY, b"", [SEALED_ENDPOINT_V4])
    with pytest.raises(SealingError):
        open_affiliate(OTHER_KEY, SEALED_RECORD, [])
    with pytest.raises(RecordError):
        open_affiliate(KEY, seal_data(KEY, b"\xff", NONCE), [])


# --- properties -----------------------------------------------------------------------------

ips: st.SearchStrategy[IPAddress] = st.ip_addresses()
networks: st.SearchStrategy[IPNetwork] = st.builds(
    lambda ip, bits: ip_network((ip, bits % (ip.max_prefixlen + 1)), strict=False),
    ips,
    st.integers(0, 128),
)
records = st.builds(
    AffiliateRecord,
    node_id=st.text(max_size=50),
    addresses=st.lists(ips, max_size=4).map(tuple),
    hostname=st.text(max_size=20),
    nodename=st.text(max_size=20),
    kubespan=st.none()
    | st.builds(
        KubeSpanInfo,
        public_key=st.text(max_size=44),
        address=st.none() | st.ip_addresses(v=6).map(IPv6Address),
        additional_addresses=st.lists(networks, max_size=3).map(tuple),
    ),
    api_server_port=st.none() | st.integers(0, 0xFFFF),
)
endpoints = st.builds(EndpointAddr, ips, st.integers(0, 0xFFFF))


@given(records, st.binary(min_size=12, max_size=12))
def test_records_round_trip_through_sealing(record: AffiliateRecord, nonce: bytes) -> None:
    blob = seal_record(KEY, record, nonce)
    assert len(blob) == 12 + len(encode_affiliate(record)) + 16
    assert open_record(KEY, blob) == record


@given(endpoints)
def test_endpoints_round_trip_through_sealing(endpoint: EndpointAddr) -> None:
    blob = seal_endpoint_addr(KEY, endpoint)
    assert len(blob) == (16 if endpoint.ip.version == 4 else 32)
    assert open_endpoint_addr(KEY, blob) == endpoint


@given(st.binary(max_size=200) | st.binary(min_size=16, max_size=16))
def test_garbage_blobs_raise_only_typed_errors(blob: bytes) -> None:
    with contextlib.suppress(SealingError, RecordError):
        open_record(KEY, blob)
    with contextlib.suppress(SealingError, RecordError):
        open_endpoint_addr(KEY, blob)
    with contextlib.suppress(SealingError, RecordError):
        open_affiliate(KEY, blob, [blob])


@given(st.binary(max_size=255))
def test_authentic_garbage_raises_only_record_error(plaintext: bytes) -> None:
    # Past the crypto, decoding must still fail cleanly on whatever a key holder sealed.
    with contextlib.suppress(RecordError):
        open_record(KEY, seal_data(KEY, plaintext, NONCE))
    with contextlib.suppress(RecordError):
        open_endpoint_addr(KEY, seal_endpoint(KEY, plaintext))

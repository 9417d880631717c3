"""Binary snapshots: exact layout, round trips, damage detected; older layouts still load."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from membership.codec import CodecError, time_to_micros
from membership.model import Affiliate, ClusterView, Endpoint
from membership.snapshot import MAGIC, decode_snapshot, encode_snapshot
from tests.membership.strategies import cluster_views

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AT = EPOCH + timedelta(microseconds=1_700_000_000_123_456)


def _v3(views: list[ClusterView], magic: bytes = b"KSNAP3") -> bytes:
    """The same snapshot in the struct-packed layout written before KSNAP4."""
    out = [magic]
    for view in views:
        cid = view.id.encode()
        out += (
            struct.pack("<I", len(cid)),
            cid,
            struct.pack("<QI", view.revision, len(view.affiliates)),
        )
        for a in view.affiliates.values():
            aid = a.id.encode()
            out += (struct.pack("<H", len(aid)), aid, struct.pack("<I", len(a.data)), a.data)
            out.append(struct.pack("<qH", time_to_micros(a.expires_at), len(a.endpoints)))
            for e in a.endpoints:
                out += (struct.pack("<H", len(e.data)), e.data)
                out.append(struct.pack("<q", time_to_micros(e.expires_at)))
        if magic == b"KSNAP3":
            out.append(struct.pack("<I", len(view.revoked)))
            out += sorted(view.revoked)
    body = b"".join(out)
    return body + _crc(body)


def _v2(views: list[ClusterView]) -> bytes:
    """The same snapshot as written before revocations existed (KSNAP2, no revoked keys)."""
    return _v3(views, b"KSNAP2")


def _v1(views: list[ClusterView]) -> bytes:
    """The same snapshot as written before the checksum existed."""
    return b"KSNAP1" + _v2(views)[len(b"KSNAP2") : -4]


def _crc(body: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(body))


VIEW = ClusterView("c", {"a": Affiliate("a", b"xy", (Endpoint(b"e", AT),), AT)}, 7)


def test_layout_is_exact() -> None:
    # MessagePack: 9x fixarray, ax fixstr, c4 bin 8, d7 ff timestamp 64 (ns << 34 | s).
    at = "d7 ff 1d 6f 28 00 65 53 f1 00"  # 123456000 ns, 1700000000 s
    body = MAGIC + bytes.fromhex(
        "26 00 00 00"  # the cluster's 38 bytes follow:
        "94 a1 63 07"  # [id "c", revision 7,
        f"91 94 a1 61 c4 02 78 79 91 92 c4 01 65 {at} {at}"  # [affiliate "a"],
        "90"  # no revoked keys]
    )
    assert encode_snapshot([VIEW]) == body + _crc(body)


def test_the_struct_packed_layout_still_loads() -> None:
    micros = struct.pack("<q", 1_700_000_000_123_456)
    body = (
        b"KSNAP3"
        + b"\x01\x00\x00\x00c"  # cluster id
        + struct.pack("<QI", 7, 1)  # revision, affiliate count
        + b"\x01\x00a"  # affiliate id
        + b"\x02\x00\x00\x00xy"  # data
        + micros
        + b"\x01\x00"  # expiry, endpoint count
        + b"\x01\x00e"
        + micros  # endpoint blob and expiry
        + b"\x00\x00\x00\x00"  # no revoked keys
    )
    assert _v3([VIEW]) == body + _crc(body)
    assert decode_snapshot(body + _crc(body)) == {"c": VIEW}


def test_empty_snapshot_is_only_the_magic() -> None:
    assert encode_snapshot([]) == MAGIC + _crc(MAGIC)
    assert decode_snapshot(MAGIC + _crc(MAGIC)) == {}
    assert decode_snapshot(b"KSNAP3" + _crc(b"KSNAP3")) == {}
    assert decode_snapshot(b"KSNAP1") == {}


def test_order_of_clusters_and_affiliates_survives() -> None:
    b = Affiliate("b", b"", (), AT)
    a = Affiliate("a", b"", (), AT)
    views = [ClusterView("z", {"b": b, "a": a}, 1), ClusterView("y", {"a": a}, 2)]
    for blob in (encode_snapshot(views), _v3(views)):
        decoded = decode_snapshot(blob)
        assert list(decoded) == ["z", "y"]
        assert list(decoded["z"].affiliates) == ["b", "a"]


@settings(max_examples=200, deadline=None)
@given(st.lists(cluster_views(), max_size=4, unique_by=lambda v: v.id))
def test_round_trip(views: list[ClusterView]) -> None:
    assert decode_snapshot(encode_snapshot(views)) == {v.id: v for v in views}
    assert decode_snapshot(_v3(views)) == {v.id: v for v in views}


def test_every_truncation_is_detected() -> None:
    view = ClusterView("c", {"a": Affiliate("a", b"data", (Endpoint(b"ep", AT),), AT)}, 3)
    for blob in (encode_snapshot([view]), _v3([view]), _v2([view]), _v1([view])):
        for cut in range(len(MAGIC), len(blob)):
            if cut == len(MAGIC) and blob.startswith(b"KSNAP1"):
                assert decode_snapshot(blob[:cut]) == {}
                continue
            with pytest.raises(CodecError):
                decode_snapshot(blob[:cut])


def test_every_flipped_bit_is_detected() -> None:
    view = ClusterView("c", {"a": Affiliate("a", b"data", (Endpoint(b"ep", AT),), AT)}, 3)
    for blob in (encode_snapshot([view]), _v3([view])):
        for i in range(len(blob)):
            for bit in range(8):
                damaged = bytearray(blob)
                damaged[i] ^= 1 << bit
                with pytest.raises(CodecError):
                    decode_snapshot(bytes(damaged))


@settings(max_examples=50, deadline=None)
@given(st.lists(cluster_views(), max_size=3, unique_by=lambda v: v.id))
def test_snapshots_written_before_the_checksum_still_load(views: list[ClusterView]) -> None:
    unrevoked = [replace(v, revoked=frozenset()) for v in views]
    assert decode_snapshot(_v1(unrevoked)) == {v.id: v for v in unrevoked}
    assert decode_snapshot(_v2(unrevoked)) == {v.id: v for v in unrevoked}


def test_revoked_keys_survive_and_keep_an_empty_cluster() -> None:
    view = ClusterView("c", {}, 9, frozenset({b"k" * 32, b"j" * 32}))
    blob = encode_snapshot([view])
    assert blob.endswith(b"\x92\xc4\x20" + b"j" * 32 + b"\xc4\x20" + b"k" * 32 + _crc(blob[:-4]))
    assert decode_snapshot(blob) == {"c": view}
    blob = _v3([view])
    assert blob.endswith(b"j" * 32 + b"k" * 32 + _crc(blob[:-4]))
    assert decode_snapshot(blob) == {"c": view}
    with pytest.raises(CodecError):
        body = blob[:-4].replace(b"\x02\x00\x00\x00" + b"j" * 32, b"\x09\x00\x00\x00" + b"j" * 32)
        decode_snapshot(body + _crc(body))


def test_time_out_of_range_is_rejected() -> None:
    view = ClusterView("c", {"a": Affiliate("a", b"", (), AT)}, 1)
    blob = _v1([view]).replace(struct.pack("<q", 1_700_000_000_123_456), struct.pack("<q", 2**62))
    with pytest.raises(CodecError):
        decode_snapshot(blob)
    # The year 10000 as a timestamp 96, under a checksum that matches.
    later = bytes.fromhex("c7 0c ff 00 00 00 00 00 00 00 3a ff f4 41 80")  # 253402300800 s
    cluster = bytes.fromhex(f"94 a1 63 01 91 94 a1 61 c4 00 90 {later.hex()} 90")
    body = MAGIC + struct.pack("<I", len(cluster)) + cluster
    with pytest.raises(CodecError):
        decode_snapshot(body + _crc(body))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("00 00 00 00", id="empty-cluster"),
        pytest.param("01 00 00 00 80", id="a-map"),
        pytest.param("05 00 00 00 93 a1 63 01 90", id="cluster-short"),
        pytest.param("07 00 00 00 94 a1 63 01 90 90 90", id="trailing-bytes"),
        pytest.param("09 00 00 00 94 a1 63 01 91 a1 61 90 90", id="affiliate-not-an-array"),
        pytest.param("09 00 00 00 94 a1 63 01 90 90", id="length-past-the-end"),
        pytest.param("05 00", id="length-cut"),
    ],
)
def test_a_matching_checksum_over_a_wrong_shape_is_rejected(body: str) -> None:
    blob = MAGIC + bytes.fromhex(body)
    with pytest.raises(CodecError, match="damaged snapshot"):
        decode_snapshot(blob + _crc(blob))


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"KSNAP0",
        b"{}",
        b"KSNAP1" + b"\x05\x00\x00\x00\xff\xfe\xfd\xfc\xfb" + bytes(12),
        b"KSNAP3" + b"\x05\x00\x00\x00\xff\xfe\xfd\xfc\xfb" + bytes(12),
        b"KSNAP3" + b"\x01\x02",
        MAGIC + b"\x91\x94\xa1\x63" + bytes(12),
        MAGIC + b"\x01\x02",
        b"KSNAP5" + b"\x90" + _crc(b"KSNAP5\x90"),
    ],
    ids=[
        "empty",
        "unknown-magic",
        "json",
        "bad-utf8-id",
        "bad-checksum",
        "truncated-v3",
        "bad-checksum-v4",
        "truncated-v4",
        "a-later-version",
    ],
)
def test_damaged_blobs_are_rejected(blob: bytes) -> None:
    with pytest.raises(CodecError):
        decode_snapshot(blob)

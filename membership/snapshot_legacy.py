"""Readers for the snapshot layouts written before KSNAP4 (KSNAP1 to KSNAP3); read only.

Layout (all integers little-endian; times are microseconds since the Unix epoch):
    b"KSNAP3"
    per cluster:   u32 id length, id (UTF-8), u64 revision, u32 affiliate count
    per affiliate: u16 id length, id, u32 data length, data, i64 expiry, u16 endpoint count
    per endpoint:  u16 blob length, blob, i64 expiry
    per cluster, after its affiliates: u32 revoked key count, 32 bytes per key
    u32 CRC-32 of everything before it
b"KSNAP2" is this layout without the revoked keys (written before revocations existed),
b"KSNAP1" is KSNAP2 without the trailer. A service upgraded from those versions reads one
of these once, at its first start; every snapshot after that is KSNAP4.
"""

from __future__ import annotations

import struct
import zlib
from datetime import datetime

from membership.codec import CodecError, micros_to_time
from membership.model import Affiliate, ClusterView, Endpoint

MAGIC_V3 = b"KSNAP3"
MAGIC_V2 = b"KSNAP2"
MAGIC_V1 = b"KSNAP1"
_KEY = 32
_CRC = struct.Struct("<I")
_CLUSTER = struct.Struct("<QI")
_LEN32 = struct.Struct("<I")
_LEN16 = struct.Struct("<H")
_TIME_COUNT = struct.Struct("<qH")
_TIME = struct.Struct("<q")


def is_legacy(blob: bytes) -> bool:
    """Whether `blob` starts with the magic of a layout this module reads."""
    return blob[: len(MAGIC_V3)] in (MAGIC_V3, MAGIC_V2, MAGIC_V1)


def decode_legacy(blob: bytes) -> dict[str, ClusterView]:
    """The cluster views in a KSNAP1-3 `blob`; raises CodecError when it is damaged."""
    revocations = blob.startswith(MAGIC_V3)
    if revocations or blob.startswith(MAGIC_V2):
        if len(blob) < len(MAGIC_V3) + _CRC.size:
            raise CodecError("damaged snapshot (truncated)")
        (crc,) = _CRC.unpack_from(blob, len(blob) - _CRC.size)
        blob = blob[: -_CRC.size]
        if zlib.crc32(blob) != crc:
            raise CodecError("damaged snapshot (checksum mismatch)")
    views: dict[str, ClusterView] = {}
    times: dict[int, datetime] = {}

    def when(micros: int) -> datetime:
        # Endpoints usually share their affiliate's expiry: build each datetime once.
        at = times.get(micros)
        if at is None:
            at = times[micros] = micros_to_time(micros)
        return at

    pos = len(MAGIC_V3)
    u16, u32, tc, tm, cl = (
        _LEN16.unpack_from,
        _LEN32.unpack_from,
        _TIME_COUNT.unpack_from,
        _TIME.unpack_from,
        _CLUSTER.unpack_from,
    )
    try:
        while pos < len(blob):
            (n,) = u32(blob, pos)
            cid = blob[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            revision, count = cl(blob, pos)
            pos += _CLUSTER.size
            affiliates: dict[str, Affiliate] = {}
            for _ in range(count):
                (n,) = u16(blob, pos)
                aid = blob[pos + 2 : pos + 2 + n].decode()
                pos += 2 + n
                (n,) = u32(blob, pos)
                data = blob[pos + 4 : pos + 4 + n]
                pos += 4 + n
                expires, k = tc(blob, pos)
                pos += _TIME_COUNT.size
                endpoints = []
                for _ in range(k):
                    (n,) = u16(blob, pos)
                    e = blob[pos + 2 : pos + 2 + n]
                    pos += 2 + n
                    (at,) = tm(blob, pos)
                    pos += 8
                    endpoints.append(Endpoint(e, when(at)))
                affiliates[aid] = Affiliate(aid, data, tuple(endpoints), when(expires))
            revoked: frozenset[bytes] = frozenset()
            if revocations:
                (n,) = u32(blob, pos)
                pos += 4
                if pos + n * _KEY > len(blob):
                    raise CodecError("damaged snapshot (truncated)")
                revoked = frozenset(blob[pos + i * _KEY : pos + (i + 1) * _KEY] for i in range(n))
                pos += n * _KEY
            views[cid] = ClusterView(cid, affiliates, revision, revoked)
    except (struct.error, UnicodeDecodeError, OverflowError) as exc:
        # A short blob always fails in unpack_from: every field ends in a fixed-size read.
        raise CodecError("damaged snapshot") from exc
    return views

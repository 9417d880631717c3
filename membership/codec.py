"""Serialisation of events (snapshots are in snapshot.py).

JSON keeps the log readable with the sqlite3/psql shells during an incident; blobs are
standard base64 and times are integer microseconds since the Unix epoch (UTC), which is
exact and sorts correctly.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from membership.events import (
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateRefreshed,
    AffiliateUpdated,
    DowntimeCredited,
    EndpointsExpired,
    Event,
    NodeRevoked,
)
from membership.model import Affiliate, Endpoint

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHECKED = b"\x01"
_CRC = struct.Struct("<I")


class CodecError(ValueError):
    """Stored bytes that do not decode as an event or a snapshot."""


def time_to_micros(at: datetime) -> int:
    """Microseconds since the epoch; `at` must be timezone-aware."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def micros_to_time(micros: int) -> datetime:
    """Inverse of time_to_micros, in UTC."""
    return _EPOCH + timedelta(microseconds=micros)


def encode_b64(data: bytes) -> str:
    """Standard base64 with padding, the form every JSON of ours carries blobs in."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: str) -> bytes:
    """Inverse of encode_b64; raises ValueError on anything but strict standard base64."""
    return base64.b64decode(text, validate=True)


def affiliate_to_dict(affiliate: Affiliate) -> dict[str, Any]:
    """A JSON-ready form of an affiliate, with expiries."""
    return {
        "id": affiliate.id,
        "data": encode_b64(affiliate.data),
        "endpoints": [
            [encode_b64(e.data), time_to_micros(e.expires_at)] for e in affiliate.endpoints
        ],
        "expires_at": time_to_micros(affiliate.expires_at),
    }


def affiliate_from_dict(raw: Mapping[str, Any]) -> Affiliate:
    """Inverse of affiliate_to_dict."""
    return Affiliate(
        id=raw["id"],
        data=decode_b64(raw["data"]),
        endpoints=tuple(Endpoint(decode_b64(d), micros_to_time(at)) for d, at in raw["endpoints"]),
        expires_at=micros_to_time(raw["expires_at"]),
    )


def event_type(event: Event) -> str:
    """The type name stored beside the payload."""
    return type(event).__name__


def encode_event(event: Event) -> bytes:
    """The payload bytes of `event` (its type is stored separately)."""
    body: dict[str, Any]
    match event:
        case AffiliateUpdated(affiliate=a) | EndpointsExpired(affiliate=a):
            body = {"affiliate": affiliate_to_dict(a)}
        case AffiliateRefreshed():
            body = {
                "affiliate_id": event.affiliate_id,
                "expires_at": time_to_micros(event.expires_at),
                "endpoint_expiries": [time_to_micros(t) for t in event.endpoint_expiries],
            }
        case AffiliateDeleted(affiliate_id=i) | AffiliateExpired(affiliate_id=i):
            body = {"affiliate_id": i}
        case DowntimeCredited():
            body = {
                "down_from": time_to_micros(event.down_from),
                "down_until": time_to_micros(event.down_until),
            }
        case NodeRevoked():
            body = {
                "node_key": encode_b64(event.node_key),
                "signature": encode_b64(event.signature),
            }
    return _checked(event_type(event), json.dumps(body, separators=(",", ":")).encode())


def _checked(type_name: str, body: bytes) -> bytes:
    # A flipped bit in stored JSON can leave JSON that parses as a different event, so each
    # payload carries a CRC-32 of its type and body: 0x01, u32 little-endian, body.
    crc = zlib.crc32(body, zlib.crc32(type_name.encode()))
    return _CHECKED + _CRC.pack(crc) + body


def _verified(type_name: str, payload: bytes) -> bytes:
    if not payload.startswith(_CHECKED):
        return payload  # written before payloads were checksummed: plain JSON
    body = payload[1 + _CRC.size :]
    if len(payload) < 1 + _CRC.size or _CRC.unpack_from(payload, 1)[0] != zlib.crc32(
        body, zlib.crc32(type_name.encode())
    ):
        raise CodecError(f"damaged {type_name} payload (checksum mismatch)")
    return body


def decode_event(type_name: str, payload: bytes) -> Event:
    """Inverse of encode_event; raises CodecError for unknown types, damaged or malformed
    payloads. Plain JSON payloads (stored before checksums existed) still decode."""
    verified = _verified(type_name, payload)
    try:
        body = json.loads(verified)
        match type_name:
            case "AffiliateUpdated":
                return AffiliateUpdated(affiliate=affiliate_from_dict(body["affiliate"]))
            case "EndpointsExpired":
                return EndpointsExpired(affiliate=affiliate_from_dict(body["affiliate"]))
            case "AffiliateRefreshed":
                return AffiliateRefreshed(
                    affiliate_id=body["affiliate_id"],
                    expires_at=micros_to_time(body["expires_at"]),
                    endpoint_expiries=tuple(micros_to_time(t) for t in body["endpoint_expiries"]),
                )
            case "AffiliateDeleted":
                return AffiliateDeleted(affiliate_id=body["affiliate_id"])
            case "AffiliateExpired":
                return AffiliateExpired(affiliate_id=body["affiliate_id"])
            case "DowntimeCredited":
                return DowntimeCredited(
                    down_from=micros_to_time(body["down_from"]),
                    down_until=micros_to_time(body["down_until"]),
                )
            case "NodeRevoked":
                return NodeRevoked(
                    node_key=decode_b64(body["node_key"]),
                    signature=decode_b64(body["signature"]),
                )
    # OverflowError: a time outside datetime's range (it is no ValueError).
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise CodecError(f"malformed {type_name} payload") from exc
    raise CodecError(f"unknown event type {type_name!r}")

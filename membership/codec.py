"""Serialisation of events (snapshots are in snapshot.py), and the time and base64 helpers.

An event's payload is stored beside its type name, in one of three forms, told apart by the
first byte:

    0x02  u32 CRC-32  MessagePack body   what this version writes
    0x01  u32 CRC-32  JSON body          written before the binary form (still read)
    other JSON body                      written before payloads were checksummed (still read)

The binary body is a MessagePack array of the event's fields in declaration order (msgspec
`array_like`; membership/events.py and model.py fix the order): an affiliate is
[id, data, [[blob, expiry], ...], expiry], blobs are MessagePack bin, times the MessagePack
timestamp extension (exact to the microsecond, UTC). Every worker decodes every event it did
not write itself, so decoding is a hot path: this form decodes in C, about ten times faster
than JSON with base64 (about 2 us against 20 us for an update with 600 bytes of data and
two endpoints, checksum included).

The CRC-32 covers the type name, the form byte and the body: a flipped bit can leave a body
that still parses as a different event, or turn one form into another.
JSON payloads keep blobs in standard base64 and times as integer microseconds since the
Unix epoch (UTC).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

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
_US = timedelta(microseconds=1)
_JSON = b"\x01"
_BINARY = b"\x02"
_CRC = struct.Struct("<I")
_HEAD = 1 + _CRC.size
# Up to here (the year 2096) a float of seconds rounds back to the exact microsecond (its
# error stays under half a microsecond), and fromtimestamp is faster than timedelta
# arithmetic; beyond, the exact path.
_FAST_UNTIL = 4 * 10**15

_TYPES: tuple[type[Event], ...] = (
    AffiliateUpdated,
    AffiliateRefreshed,
    AffiliateDeleted,
    AffiliateExpired,
    EndpointsExpired,
    DowntimeCredited,
    NodeRevoked,
)
_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[str, msgspec.msgpack.Decoder[Any]] = {
    t.__name__: msgspec.msgpack.Decoder(t) for t in _TYPES
}
# The CRC of each type name and the form byte, so a payload's CRC costs only its body.
_SEEDS = {t.__name__: zlib.crc32(t.__name__.encode() + _BINARY) for t in _TYPES}


class CodecError(ValueError):
    """Stored bytes that do not decode as an event or a snapshot."""


def time_to_micros(at: datetime) -> int:
    """Microseconds since the epoch; `at` must be timezone-aware."""
    return (at - _EPOCH) // _US


def micros_to_time(micros: int) -> datetime:
    """Inverse of time_to_micros, in UTC."""
    if 0 <= micros < _FAST_UNTIL:
        return datetime.fromtimestamp(micros / 1_000_000, UTC)
    return _EPOCH + timedelta(microseconds=micros)


def encode_b64(data: bytes) -> str:
    """Standard base64 with padding, the form every JSON of ours carries blobs in."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: str) -> bytes:
    """Inverse of encode_b64; raises ValueError on anything but strict standard base64."""
    return base64.b64decode(text, validate=True)


def event_type(event: Event) -> str:
    """The type name stored beside the payload."""
    return type(event).__name__


def encode_event(event: Event) -> bytes:
    """The payload bytes of `event` in the binary form (its type is stored separately);
    raises TypeError for a naive time, which no form could store as an instant."""
    name = type(event).__name__
    if _naive(event):
        raise TypeError(f"{name} carries a time without a timezone")
    body = _ENCODER.encode(event)
    return _BINARY + _CRC.pack(zlib.crc32(body, _SEEDS[name])) + body


def _naive(event: Event) -> bool:
    # MessagePack would store a naive time as text and read it back naive: refuse it here,
    # before it reaches the log, as the JSON form's arithmetic did. Loops, not any() over a
    # generator: this runs for every event written.
    times: tuple[datetime, ...]
    if isinstance(event, AffiliateUpdated | EndpointsExpired):
        affiliate = event.affiliate
        if affiliate.expires_at.tzinfo is None:
            return True
        for endpoint in affiliate.endpoints:  # noqa: SIM110 (see above)
            if endpoint.expires_at.tzinfo is None:
                return True
        return False
    if isinstance(event, AffiliateRefreshed):
        times = (event.expires_at, *event.endpoint_expiries)
    elif isinstance(event, DowntimeCredited):
        times = (event.down_from, event.down_until)
    else:
        return False
    for at in times:  # noqa: SIM110 (see above)
        if at.tzinfo is None:
            return True
    return False


def decode_event(type_name: str, payload: bytes) -> Event:
    """Inverse of encode_event; raises CodecError for unknown types, damaged or malformed
    payloads. Payloads in the JSON forms (stored by earlier versions) still decode."""
    if payload[:1] != _BINARY:
        return _decode_json(type_name, _verified_json(type_name, payload))
    decoder = _DECODERS.get(type_name)
    if decoder is None:
        raise CodecError(f"unknown event type {type_name!r}")
    body = payload[_HEAD:]  # a copy, yet cheaper than a memoryview for these sizes
    if len(payload) < _HEAD or _CRC.unpack_from(payload, 1)[0] != zlib.crc32(
        body, _SEEDS[type_name]
    ):
        raise CodecError(f"damaged {type_name} payload (checksum mismatch)")
    try:
        event: Event = decoder.decode(body)
    except msgspec.MsgspecError as exc:
        raise CodecError(f"malformed {type_name} payload") from exc
    return event


# ---------------------------------------------------------------------------------------
# The JSON forms, read only.


def _verified_json(type_name: str, payload: bytes) -> bytes:
    if not payload.startswith(_JSON):
        return payload  # written before payloads were checksummed: plain JSON
    body = payload[_HEAD:]
    if len(payload) < _HEAD or _CRC.unpack_from(payload, 1)[0] != zlib.crc32(
        body, zlib.crc32(type_name.encode())
    ):
        raise CodecError(f"damaged {type_name} payload (checksum mismatch)")
    return body


def _affiliate_from_json(raw: Mapping[str, Any]) -> Affiliate:
    return Affiliate(
        id=raw["id"],
        data=decode_b64(raw["data"]),
        endpoints=tuple(Endpoint(decode_b64(d), micros_to_time(at)) for d, at in raw["endpoints"]),
        expires_at=micros_to_time(raw["expires_at"]),
    )


def _decode_json(type_name: str, verified: bytes) -> Event:
    try:
        body = json.loads(verified)
        match type_name:
            case "AffiliateUpdated":
                return AffiliateUpdated(affiliate=_affiliate_from_json(body["affiliate"]))
            case "EndpointsExpired":
                return EndpointsExpired(affiliate=_affiliate_from_json(body["affiliate"]))
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

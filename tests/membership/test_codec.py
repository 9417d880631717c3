"""The storage format of events and snapshots: exact, stable, and strict when damaged."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membership.codec import (
    CodecError,
    decode_event,
    encode_event,
    event_type,
    micros_to_time,
    time_to_micros,
)
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
from tests.membership.strategies import T0, US, aware_datetimes, events

T0_MICROS = 1_704_067_200_000_000
MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
MIN_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# ---------------------------------------------------------------------------------------
# Times.


@pytest.mark.parametrize(
    ("at", "micros"),
    [
        pytest.param(EPOCH, 0, id="epoch"),
        pytest.param(T0, T0_MICROS, id="2024"),
        pytest.param(T0 + US, T0_MICROS + 1, id="one-microsecond-later"),
        pytest.param(EPOCH - US, -1, id="before-the-epoch"),
        pytest.param(datetime.max.replace(tzinfo=UTC), MAX_MICROS, id="max"),
        pytest.param(datetime.min.replace(tzinfo=UTC), MIN_MICROS, id="min"),
        pytest.param(
            datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            T0_MICROS,
            id="other-offset-same-instant",
        ),
    ],
)
def test_micros_are_exact(at: datetime, micros: int) -> None:
    assert time_to_micros(at) == micros
    back = micros_to_time(micros)
    assert back == at
    assert back.tzinfo is UTC


@given(st.integers(min_value=MIN_MICROS, max_value=MAX_MICROS))
def test_micros_round_trip(micros: int) -> None:
    assert time_to_micros(micros_to_time(micros)) == micros


@given(aware_datetimes())
def test_times_round_trip(at: datetime) -> None:
    assert micros_to_time(time_to_micros(at)) == at


# ---------------------------------------------------------------------------------------
# Events: the exact bytes, so the stored format cannot drift unnoticed.

AFFILIATE = Affiliate("a", b"\x00\xff", (Endpoint(b"e1", T0 + US),), T0)
AFFILIATE_JSON = (
    '{"id":"a","data":"AP8=","endpoints":[["ZTE=",1704067200000001]],"expires_at":1704067200000000}'
)

GOLDEN = [
    pytest.param(
        AffiliateUpdated(affiliate=AFFILIATE), f'{{"affiliate":{AFFILIATE_JSON}}}', id="updated"
    ),
    pytest.param(
        EndpointsExpired(affiliate=AFFILIATE),
        f'{{"affiliate":{AFFILIATE_JSON}}}',
        id="endpoints-expired",
    ),
    pytest.param(
        AffiliateRefreshed(affiliate_id="a", expires_at=T0, endpoint_expiries=(EPOCH, EPOCH - US)),
        '{"affiliate_id":"a","expires_at":1704067200000000,"endpoint_expiries":[0,-1]}',
        id="refreshed",
    ),
    pytest.param(AffiliateDeleted(affiliate_id="a"), '{"affiliate_id":"a"}', id="deleted"),
    pytest.param(
        AffiliateExpired(affiliate_id="é\n"), '{"affiliate_id":"\\u00e9\\n"}', id="expired"
    ),
    pytest.param(
        DowntimeCredited(down_from=EPOCH, down_until=T0),
        '{"down_from":0,"down_until":1704067200000000}',
        id="downtime-credited",
    ),
    pytest.param(
        NodeRevoked(node_key=b"\x00" * 32, signature=b"\xff" * 64),
        '{"node_key":"' + "A" * 43 + '=","signature":"' + "/" * 85 + 'w=="}',
        id="node-revoked",
    ),
]


def _checked(type_name: str, body: bytes) -> bytes:
    return b"\x01" + struct.pack("<I", zlib.crc32(type_name.encode() + body)) + body


@pytest.mark.parametrize(("event", "payload"), GOLDEN)
def test_event_encoding(event: Event, payload: str) -> None:
    assert encode_event(event) == _checked(event_type(event), payload.encode())
    assert decode_event(event_type(event), encode_event(event)) == event
    # Payloads stored before the checksum existed are plain JSON, and still load.
    assert decode_event(event_type(event), payload.encode()) == event


def test_every_flipped_bit_of_a_payload_is_detected() -> None:
    event = AffiliateUpdated(affiliate=AFFILIATE)
    payload = encode_event(event)
    for i in range(len(payload)):
        for bit in range(8):
            damaged = bytearray(payload)
            damaged[i] ^= 1 << bit
            with pytest.raises(CodecError):
                decode_event("AffiliateUpdated", bytes(damaged))


def test_a_payload_under_another_type_name_is_detected() -> None:
    payload = encode_event(AffiliateDeleted(affiliate_id="a"))
    with pytest.raises(CodecError, match="checksum"):
        decode_event("AffiliateExpired", payload)
    with pytest.raises(CodecError, match="checksum"):
        decode_event("AffiliateDeleted", payload[:3])


def test_event_type_is_the_class_name() -> None:
    names = [event_type(p.values[0]) for p in GOLDEN]  # type: ignore[arg-type]
    assert names == [
        "AffiliateUpdated",
        "EndpointsExpired",
        "AffiliateRefreshed",
        "AffiliateDeleted",
        "AffiliateExpired",
        "DowntimeCredited",
        "NodeRevoked",
    ]


def test_empty_affiliate_round_trips() -> None:
    event = AffiliateUpdated(affiliate=Affiliate("", b"", (), EPOCH))
    assert decode_event("AffiliateUpdated", encode_event(event)) == event


@settings(max_examples=200, deadline=None)
@given(events())
def test_events_round_trip(event: Event) -> None:
    decoded = decode_event(event_type(event), encode_event(event))
    assert decoded == event
    assert type(decoded) is type(event)


# ---------------------------------------------------------------------------------------
# Damaged events.


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _affiliate(**changes: Any) -> dict[str, Any]:
    good: dict[str, Any] = {"id": "a", "data": "AA==", "endpoints": [["ZQ==", 0]], "expires_at": 0}
    return {k: v for k, v in {**good, **changes}.items() if v is not ...}


UNKNOWN = [
    pytest.param("NoSuchEvent", b"{}", id="unknown"),
    pytest.param("", b"{}", id="empty-name"),
    pytest.param("affiliateupdated", _json({"affiliate": _affiliate()}), id="case-sensitive"),
    pytest.param("Event", b"{}", id="the-union-is-no-type"),
]

MALFORMED = [
    pytest.param("AffiliateDeleted", b"{", id="truncated-json"),
    pytest.param("AffiliateDeleted", b"", id="empty-payload"),
    pytest.param("AffiliateDeleted", b"\xff\xfe", id="not-utf8"),
    pytest.param("AffiliateDeleted", b"{}", id="missing-affiliate-id"),
    pytest.param("AffiliateExpired", b"null", id="null-body"),
    pytest.param("AffiliateExpired", b"[]", id="list-body"),
    pytest.param("AffiliateUpdated", b"{}", id="missing-affiliate"),
    pytest.param(
        "AffiliateUpdated", _json({"affiliate": _affiliate(expires_at=...)}), id="missing-expiry"
    ),
    pytest.param("AffiliateUpdated", _json({"affiliate": _affiliate(id=...)}), id="missing-id"),
    pytest.param(
        "AffiliateUpdated", _json({"affiliate": _affiliate(data="!!!!")}), id="bad-base64"
    ),
    pytest.param(
        "AffiliateUpdated", _json({"affiliate": _affiliate(data="AAA")}), id="bad-padding"
    ),
    pytest.param("AffiliateUpdated", _json({"affiliate": _affiliate(data=7)}), id="data-not-text"),
    pytest.param(
        "AffiliateUpdated", _json({"affiliate": _affiliate(expires_at="soon")}), id="time-not-int"
    ),
    pytest.param(
        "EndpointsExpired",
        _json({"affiliate": _affiliate(endpoints=[["Z Q==", 0]])}),
        id="bad-endpoint-base64",
    ),
    pytest.param(
        "EndpointsExpired",
        _json({"affiliate": _affiliate(endpoints=[["ZQ=="]])}),
        id="endpoint-pair-short",
    ),
    pytest.param(
        "EndpointsExpired",
        _json({"affiliate": _affiliate(endpoints=[["ZQ==", 0, 1]])}),
        id="endpoint-pair-long",
    ),
    pytest.param(
        "EndpointsExpired", _json({"affiliate": _affiliate(endpoints=None)}), id="endpoints-null"
    ),
    pytest.param(
        "AffiliateRefreshed",
        _json({"affiliate_id": "a", "expires_at": 0}),
        id="missing-endpoint-expiries",
    ),
    pytest.param(
        "AffiliateRefreshed",
        _json({"affiliate_id": "a", "expires_at": 0, "endpoint_expiries": [None]}),
        id="null-endpoint-expiry",
    ),
    pytest.param("DowntimeCredited", _json({"down_from": 0}), id="missing-down-until"),
    pytest.param(
        "DowntimeCredited", _json({"down_from": 10**20, "down_until": 0}), id="timedelta-overflow"
    ),
    pytest.param(
        "DowntimeCredited",
        _json({"down_from": MAX_MICROS + 1, "down_until": 0}),
        id="past-datetime-max",
    ),
    pytest.param(
        "DowntimeCredited",
        _json({"down_from": MIN_MICROS - 1, "down_until": 0}),
        id="before-datetime-min",
    ),
    pytest.param("DowntimeCredited", b'{"down_from":Infinity,"down_until":0}', id="infinity"),
    pytest.param("DowntimeCredited", b'{"down_from":NaN,"down_until":0}', id="nan"),
    pytest.param("NoSuchEvent", b"{", id="unknown-and-malformed"),
]


@pytest.mark.parametrize(("type_name", "payload"), UNKNOWN)
def test_unknown_event_types_are_rejected(type_name: str, payload: bytes) -> None:
    with pytest.raises(CodecError, match="unknown event type"):
        decode_event(type_name, payload)


@pytest.mark.parametrize(("type_name", "payload"), MALFORMED)
def test_malformed_events_are_rejected(type_name: str, payload: bytes) -> None:
    with pytest.raises(CodecError, match="malformed"):
        decode_event(type_name, payload)


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)

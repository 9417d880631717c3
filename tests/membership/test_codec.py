"""The storage format of events: times, and the binary form exact, stable and strict when damaged.

The JSON forms earlier versions wrote are in test_codec_json.py.
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone

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
from tests.membership.codec_vectors import AFFILIATE, EPOCH, MAX_MICROS, MIN_MICROS, T0_MICROS
from tests.membership.strategies import T0, US, aware_datetimes, events

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


@pytest.mark.parametrize(
    "micros",
    [4 * 10**15 - 1, 4 * 10**15, 2**52 - 1, 2**52, 2**53 + 1, 1_999_999_999_999_999],
)
def test_micros_are_exact_around_the_float_fast_path(micros: int) -> None:
    # Below 4e15 the conversion goes through a float of seconds; it must still be exact.
    for m in range(micros - 3, micros + 4):
        assert time_to_micros(micros_to_time(m)) == m


# ---------------------------------------------------------------------------------------
# Events in the binary form: the exact bytes, so the stored format cannot drift unnoticed.
# Bodies are MessagePack: 9x fixarray, ax fixstr, c4 bin 8, d6 ff timestamp 32 (seconds),
# d7 ff timestamp 64 (nanoseconds << 34 | seconds), c7 0c ff timestamp 96 (u32 ns, i64 s).

T0_TS = "d6 ff 65 92 00 80"  # 1704067200 s
T0_PLUS_US_TS = "d7 ff 00 00 0f a0 65 92 00 80"  # 1000 ns, 1704067200 s
EPOCH_TS = "d6 ff 00 00 00 00"
EPOCH_MINUS_US_TS = "c7 0c ff 3b 9a c6 18 ff ff ff ff ff ff ff ff"  # 999999000 ns, -1 s
AFFILIATE_BODY = f"94 a1 61 c4 02 00 ff 91 92 c4 02 65 31 {T0_PLUS_US_TS} {T0_TS}"

BINARY = [
    pytest.param(AffiliateUpdated(affiliate=AFFILIATE), f"91 {AFFILIATE_BODY}", id="updated"),
    pytest.param(
        EndpointsExpired(affiliate=AFFILIATE), f"91 {AFFILIATE_BODY}", id="endpoints-expired"
    ),
    pytest.param(
        AffiliateRefreshed(affiliate_id="a", expires_at=T0, endpoint_expiries=(EPOCH, EPOCH - US)),
        f"93 a1 61 {T0_TS} 92 {EPOCH_TS} {EPOCH_MINUS_US_TS}",
        id="refreshed",
    ),
    pytest.param(AffiliateDeleted(affiliate_id="a"), "91 a1 61", id="deleted"),
    pytest.param(AffiliateExpired(affiliate_id="é\n"), "91 a3 c3 a9 0a", id="expired"),
    pytest.param(
        DowntimeCredited(down_from=EPOCH, down_until=T0),
        f"92 {EPOCH_TS} {T0_TS}",
        id="downtime-credited",
    ),
    pytest.param(
        NodeRevoked(node_key=b"\x00" * 32, signature=b"\xff" * 64),
        "92 c4 20" + " 00" * 32 + " c4 40" + " ff" * 64,
        id="node-revoked",
    ),
]


def _binary(type_name: str, body: bytes) -> bytes:
    # 0x02, then a CRC-32 of the type name, the form byte and the body (u32 little-endian).
    return b"\x02" + struct.pack("<I", zlib.crc32(type_name.encode() + b"\x02" + body)) + body


@pytest.mark.parametrize(("event", "body"), BINARY)
def test_event_encoding(event: Event, body: str) -> None:
    payload = _binary(event_type(event), bytes.fromhex(body))
    assert encode_event(event) == payload
    assert decode_event(event_type(event), payload) == event


def test_every_flipped_bit_of_a_payload_is_detected() -> None:
    payload = encode_event(AffiliateUpdated(affiliate=AFFILIATE))
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
    names = [event_type(p.values[0]) for p in BINARY]  # type: ignore[arg-type]
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


@settings(max_examples=300, deadline=None)
@given(events())
def test_events_round_trip(event: Event) -> None:
    decoded = decode_event(event_type(event), encode_event(event))
    assert decoded == event
    assert type(decoded) is type(event)


@given(events())
def test_decoded_times_are_utc(event: Event) -> None:
    decoded = decode_event(event_type(event), encode_event(event))
    for name in ("expires_at", "down_from", "down_until"):
        if hasattr(decoded, name):
            assert getattr(decoded, name).tzinfo is UTC


NAIVE = datetime(2024, 1, 1)


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(AffiliateUpdated(affiliate=Affiliate("a", b"", (), NAIVE)), id="expiry"),
        pytest.param(
            EndpointsExpired(affiliate=Affiliate("a", b"", (Endpoint(b"e", NAIVE),), T0)),
            id="endpoint-expiry",
        ),
        pytest.param(
            AffiliateRefreshed(affiliate_id="a", expires_at=T0, endpoint_expiries=(NAIVE,)),
            id="refreshed",
        ),
        pytest.param(DowntimeCredited(down_from=T0, down_until=NAIVE), id="downtime"),
    ],
)
def test_naive_times_are_refused_before_they_reach_the_log(event: Event) -> None:
    with pytest.raises(TypeError, match="without a timezone"):
        encode_event(event)


# ---------------------------------------------------------------------------------------
# Damaged binary payloads whose checksum matches: what a bug, not a flipped bit, would write.


@pytest.mark.parametrize(
    ("type_name", "body"),
    [
        pytest.param("AffiliateUpdated", "91 a1 61", id="another-events-body"),
        pytest.param("AffiliateDeleted", "", id="empty-body"),
        pytest.param("AffiliateDeleted", "91 a1 61 c0", id="trailing-bytes"),
        pytest.param("AffiliateDeleted", "91 a2 ff fe", id="not-utf8"),
        pytest.param("AffiliateDeleted", "90", id="missing-field"),
        pytest.param("DowntimeCredited", f"92 {EPOCH_TS} a4 73 6f 6f 6e", id="time-as-text"),
        pytest.param("NodeRevoked", "92 a1 61 c4 00", id="key-as-text"),
    ],
)
def test_malformed_binary_events_are_rejected(type_name: str, body: str) -> None:
    with pytest.raises(CodecError, match="malformed"):
        decode_event(type_name, _binary(type_name, bytes.fromhex(body)))


def test_unknown_types_in_the_binary_form_are_rejected() -> None:
    payload = encode_event(AffiliateDeleted(affiliate_id="a"))
    for name in ("NoSuchEvent", "", "affiliatedeleted", "Event"):
        with pytest.raises(CodecError, match="unknown event type"):
            decode_event(name, payload)


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)

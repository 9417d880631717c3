"""The JSON forms of events that earlier versions wrote: they must still decode, exactly.

Checksummed JSON (0x01, CRC-32, body) and, before it, plain JSON. Blobs are standard base64,
times integer microseconds since the Unix epoch.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membership.codec import (
    CodecError,
    decode_event,
    encode_b64,
    encode_event,
    event_type,
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
from membership.model import Affiliate
from membership.registry import project
from tests.membership.codec_vectors import AFFILIATE, EPOCH, MAX_MICROS, MIN_MICROS
from tests.membership.strategies import T0, US, Step, events, run_live, steps

# ---------------------------------------------------------------------------------------
# Known answers.

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
def test_json_payloads_still_decode(event: Event, payload: str) -> None:
    # What versions before the binary form wrote: checksummed JSON.
    assert decode_event(event_type(event), _checked(event_type(event), payload.encode())) == event
    # Payloads stored before the checksum existed are plain JSON, and still load.
    assert decode_event(event_type(event), payload.encode()) == event


def test_every_flipped_bit_of_a_json_payload_is_detected() -> None:
    payload = _checked("AffiliateUpdated", f'{{"affiliate":{AFFILIATE_JSON}}}'.encode())
    for i in range(len(payload)):
        for bit in range(8):
            damaged = bytearray(payload)
            damaged[i] ^= 1 << bit
            with pytest.raises(CodecError):
                decode_event("AffiliateUpdated", bytes(damaged))


def test_a_json_payload_under_another_type_name_is_detected() -> None:
    payload = _checked("AffiliateDeleted", b'{"affiliate_id":"a"}')
    with pytest.raises(CodecError, match="checksum"):
        decode_event("AffiliateExpired", payload)
    with pytest.raises(CodecError, match="checksum"):
        decode_event("AffiliateDeleted", payload[:3])


def _affiliate_json(a: Affiliate) -> dict[str, Any]:
    return {
        "id": a.id,
        "data": encode_b64(a.data),
        "endpoints": [[encode_b64(e.data), time_to_micros(e.expires_at)] for e in a.endpoints],
        "expires_at": time_to_micros(a.expires_at),
    }


def _json_form(event: Event) -> bytes:
    """The checksummed JSON payload an earlier version wrote for `event`."""
    body: dict[str, Any]
    match event:
        case AffiliateUpdated(affiliate=a) | EndpointsExpired(affiliate=a):
            body = {"affiliate": _affiliate_json(a)}
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


@pytest.mark.parametrize(("event", "payload"), GOLDEN)
def test_the_test_writer_is_the_old_writer(event: Event, payload: str) -> None:
    assert _json_form(event) == _checked(event_type(event), payload.encode())


@settings(max_examples=200, deadline=None)
@given(events())
def test_every_event_decodes_from_its_json_form(event: Event) -> None:
    decoded = decode_event(event_type(event), _json_form(event))
    assert decoded == event
    assert type(decoded) is type(event)


@settings(max_examples=100, deadline=None)
@given(steps(), st.data())
def test_a_log_upgraded_in_place_replays_to_the_live_state(
    script: list[Step], data: st.DataObject
) -> None:
    # An upgraded service reads the JSON events its predecessor wrote, then its own.
    run = run_live(script)
    upgraded_at = data.draw(st.integers(min_value=0, max_value=len(run.log)))
    stored = [
        (stream, event_type(e), _json_form(e) if i < upgraded_at else encode_event(e), rev)
        for i, (stream, e, rev) in enumerate(run.log)
    ]
    replayed = project((stream, decode_event(t, p), rev) for stream, t, p, rev in stored)
    assert replayed == run.views


# ---------------------------------------------------------------------------------------
# Damaged JSON payloads.


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

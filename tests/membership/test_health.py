from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership.errors import RecordError
from membership.health import (
    AGE_NEVER,
    ENTRY_SIZE,
    HealthState,
    MeshHealth,
    PeerHealth,
    fit,
    key_id,
    pack_peers,
    unpack_peers,
)
from membership.limits import AFFILIATE_DATA_MAX
from membership.record import AffiliateRecord, KubeSpanInfo
from membership.sealing import NONCE_SIZE, TAG_SIZE
from membership.talos_codec import decode_affiliate, encode_affiliate
from tests.membership.talos_codec_support import FULL_RECORD, FULL_RECORD_BYTES
from tests.membership.test_talos_codec_protobuf import _PB
from tests.membership.wire import encode_len_field

KEY = base64.b64encode(bytes(range(32))).decode()


def _peer(i: int, state: HealthState = HealthState.UP, age: int | None = 3) -> PeerHealth:
    return PeerHealth(
        key_id=i.to_bytes(4, "big"), state=state, receiving=True, session=i % 2 == 0,
        handshake_age=age,
    )  # fmt: skip


def test_entries_are_eight_bytes_as_documented() -> None:
    peers = (
        PeerHealth(key_id=b"\x01\x02\x03\x04", state=HealthState.UP, receiving=True,
                   session=True, handshake_age=300),
        PeerHealth(key_id=b"\xaa\xbb\xcc\xdd", state=HealthState.DOWN),
    )  # fmt: skip
    packed = pack_peers(peers)
    assert packed == bytes.fromhex("010203040103012caabbccdd0200ffff")
    assert unpack_peers(packed) == peers


def test_ages_saturate_and_never_is_all_ones() -> None:
    packed = pack_peers((_peer(1, age=10**6), _peer(2, age=-5), _peer(3, age=None)))
    assert [p.handshake_age for p in unpack_peers(packed)] == [0xFFFE, 0, None]
    assert packed[-2:] == AGE_NEVER.to_bytes(2, "big")


def test_unknown_states_and_flags_from_a_newer_agent_are_read_leniently() -> None:
    (peer,) = unpack_peers(bytes.fromhex("0102030407fd0001"))
    assert peer == PeerHealth(
        key_id=b"\x01\x02\x03\x04", state=HealthState.UNKNOWN, receiving=True, handshake_age=1
    )


def test_a_partial_entry_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="multiple of 8"):
        unpack_peers(bytes(ENTRY_SIZE + 3))


def test_key_id_is_the_raw_key_prefix() -> None:
    assert key_id(KEY) == bytes(range(4))
    for bad in ("not base64!", base64.b64encode(bytes(16)).decode()):
        with pytest.raises(ValueError, match="not a WireGuard public key"):
            key_id(bad)
    with pytest.raises(ValueError, match="4 bytes"):
        pack_peers((PeerHealth(key_id=b"\x01"),))


@given(
    st.lists(
        st.builds(
            PeerHealth,
            key_id=st.binary(min_size=4, max_size=4),
            state=st.sampled_from(HealthState),
            receiving=st.booleans(),
            session=st.booleans(),
            handshake_age=st.none() | st.integers(0, 0xFFFE),
        ),
        max_size=20,
    ),
    st.integers(0, 2**40),
    st.integers(0, 2**31),
)
def test_health_round_trips_through_the_record(
    peers: list[PeerHealth], observed_at: int, omitted: int
) -> None:
    health = MeshHealth(observed_at=observed_at, peers=tuple(peers), omitted=omitted)
    record = replace(FULL_RECORD, mesh_health=health)
    assert decode_affiliate(encode_affiliate(record)) == record


def test_talos_reads_every_other_field_byte_for_byte() -> None:
    health = MeshHealth(observed_at=1_700_000_000, peers=(_peer(1), _peer(2)))
    data = encode_affiliate(replace(FULL_RECORD, mesh_health=health))
    # Ours comes last (field 1000), after the bytes Talos' known-answer test pins.
    assert data.startswith(FULL_RECORD_BYTES)
    upstream = _PB["Affiliate"].FromString(data)  # a parser with upstream's schema only
    upstream.DiscardUnknownFields()
    assert upstream.SerializeToString(deterministic=True) == FULL_RECORD_BYTES


def test_an_empty_view_is_still_present() -> None:
    data = encode_affiliate(replace(FULL_RECORD, mesh_health=MeshHealth(observed_at=0)))
    assert data == FULL_RECORD_BYTES + encode_len_field(1000, b"")
    assert decode_affiliate(data).mesh_health == MeshHealth(observed_at=0)


def _big_record(health: MeshHealth | None) -> AffiliateRecord:
    return AffiliateRecord(
        node_id="n" * 43,
        hostname="h" * 63,
        nodename="h" * 63,
        machine_type="controlplane",
        operating_system="Linux (kubespan 1.0.0)",
        kubespan=KubeSpanInfo(public_key=KEY),
        mesh_health=health,
    )


def test_100_nodes_fit_the_record_limit() -> None:
    health = MeshHealth(observed_at=2**33, peers=tuple(_peer(i) for i in range(99)))
    room = AFFILIATE_DATA_MAX - NONCE_SIZE - TAG_SIZE - len(encode_affiliate(_big_record(None)))
    assert fit(health, room) == health
    sealed = NONCE_SIZE + TAG_SIZE + len(encode_affiliate(_big_record(health)))
    assert sealed < AFFILIATE_DATA_MAX


def test_beyond_the_limit_peers_not_up_are_kept_and_the_rest_counted() -> None:
    peers = (*(_peer(i) for i in range(300)), _peer(999, HealthState.DOWN))
    health = MeshHealth(observed_at=2**33, peers=peers, omitted=1)
    room = AFFILIATE_DATA_MAX - NONCE_SIZE - TAG_SIZE - len(encode_affiliate(_big_record(None)))
    fitted = fit(health, room)
    assert fitted.peers[0].key_id == (999).to_bytes(4, "big")
    assert len(fitted.peers) + fitted.omitted == len(peers) + 1
    sealed = NONCE_SIZE + TAG_SIZE + len(encode_affiliate(_big_record(fitted)))
    assert sealed <= AFFILIATE_DATA_MAX
    assert fit(health, 0) == replace(health, peers=(), omitted=len(peers) + 1)

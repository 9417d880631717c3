"""Mesh health: one node's view of its WireGuard peers, and its compact wire form.

A node publishes this inside its sealed record (Affiliate field 1000, which Talos skips as an
unknown field), so every node can show the whole mesh: row = observer, column = peer. The
layout is written down for other readers in docs/mesh-health.md; in short, each peer is 8
bytes so that 100 nodes fit well inside the 2 KiB record limit:

    offset 0  4 bytes  the first 4 bytes of the peer's raw WireGuard public key
    offset 4  1 byte   state: 0 unknown, 1 up, 2 down (other values read as unknown)
    offset 5  1 byte   flags: bit 0 receiving, bit 1 session (other bits ignored)
    offset 6  2 bytes  seconds since the last handshake at `observed_at`, big-endian;
                       0xFFFF = never (or longer ago than that)
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from enum import IntEnum

from membership.errors import RecordError

ENTRY_SIZE = 8
KEY_ID_SIZE = 4
AGE_NEVER = 0xFFFF
FLAG_RECEIVING = 0x01
"""Authenticated packets from the peer arrived recently: the peer reaches us."""
FLAG_SESSION = 0x02
"""A handshake completed recently: it needs packets both ways, so we reach the peer too."""
_HEADER_MAX = 24
"""Bytes of the field around the entries at most: tags, lengths, observed_at, omitted."""


class HealthState(IntEnum):
    """A peer's state as its observer judged it (kubespan's `unknown`/`up`/`down`)."""

    UNKNOWN = 0
    UP = 1
    DOWN = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerHealth:
    """One peer as one observer sees it."""

    key_id: bytes
    """The first KEY_ID_SIZE bytes of the peer's raw public key (see key_id())."""
    state: HealthState = HealthState.UNKNOWN
    receiving: bool = False
    session: bool = False
    handshake_age: int | None = None
    """Whole seconds from the last handshake to `observed_at`; None = never."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshHealth:
    """One node's view of its peers at `observed_at` (Unix seconds)."""

    observed_at: int
    peers: tuple[PeerHealth, ...] = ()
    omitted: int = 0
    """Peers left out so the record stays under the size limit (see fit())."""


def key_id(public_key: str) -> bytes:
    """The id a health entry names a peer by; ValueError unless a base64 32-byte key."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except binascii.Error:
        raise ValueError(f"not a WireGuard public key: {public_key!r}") from None
    if len(raw) != 32:
        raise ValueError(f"not a WireGuard public key: {public_key!r}")
    return raw[:KEY_ID_SIZE]


def pack_peers(peers: tuple[PeerHealth, ...]) -> bytes:
    """The `peers` bytes of the field; ValueError on a key id of the wrong size."""
    out = bytearray()
    for peer in peers:
        if len(peer.key_id) != KEY_ID_SIZE:
            raise ValueError(f"key id must be {KEY_ID_SIZE} bytes, got {len(peer.key_id)}")
        age = AGE_NEVER if peer.handshake_age is None else min(max(peer.handshake_age, 0), 0xFFFE)
        flags = (FLAG_RECEIVING if peer.receiving else 0) | (FLAG_SESSION if peer.session else 0)
        out += peer.key_id + bytes((int(peer.state), flags)) + age.to_bytes(2, "big")
    return bytes(out)


def unpack_peers(data: bytes) -> tuple[PeerHealth, ...]:
    """Entries from the `peers` bytes; RecordError unless a whole number of entries.

    Lenient where a newer agent may add meaning: unknown states read as unknown, unknown
    flag bits are ignored.
    """
    if len(data) % ENTRY_SIZE:
        raise RecordError(f"mesh_health.peers: {len(data)} bytes is not a multiple of 8")
    peers = []
    for offset in range(0, len(data), ENTRY_SIZE):
        entry = data[offset : offset + ENTRY_SIZE]
        state = HealthState(entry[4]) if entry[4] <= HealthState.DOWN else HealthState.UNKNOWN
        age = int.from_bytes(entry[6:8], "big")
        peers.append(
            PeerHealth(
                key_id=entry[:KEY_ID_SIZE],
                state=state,
                receiving=bool(entry[5] & FLAG_RECEIVING),
                session=bool(entry[5] & FLAG_SESSION),
                handshake_age=None if age == AGE_NEVER else age,
            )
        )
    return tuple(peers)


def fit(health: MeshHealth, room: int) -> MeshHealth:
    """Keep as many peers as fit in `room` bytes of record; pure.

    Peers not `up` go first, because they are what a reader of a large mesh looks for; the
    rest are counted in `omitted`, so a reader can tell "left out" from "not a peer".
    """
    keep = max((room - _HEADER_MAX) // ENTRY_SIZE, 0)
    if len(health.peers) <= keep:
        return health
    ordered = sorted(health.peers, key=lambda p: p.state is HealthState.UP)
    kept = tuple(ordered[:keep])
    return replace(health, peers=kept, omitted=health.omitted + len(health.peers) - len(kept))

"""Sealing and opening affiliate data and endpoints, byte-compatible with Talos' discovery client.

Source: siderolabs/discovery-client `pkg/client/client.go`. The key is the base64-decoded
cluster secret used directly as an AES-256 key (no KDF).

- data:     AES-256-GCM, `nonce(12) || ciphertext || tag(16)`, no associated data.
- endpoint: `len(pb) || pb`, zero-padded to a multiple of 16, each block AES-ECB encrypted.
            ECB is deliberate upstream: equal endpoints give equal blobs, so the server can
            dedupe them without the key. It has no integrity protection.

Nothing from `cryptography` escapes: failures are SealingError (crypto or framing) or
RecordError (the plaintext is not the expected protobuf message).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from membership.errors import RecordError, SealingError
from membership.record import AffiliateRecord, DecodedAffiliate, EndpointAddr
from membership.secrets import decode_cluster_secret
from membership.talos_codec import (
    decode_affiliate,
    decode_endpoint,
    encode_affiliate,
    encode_endpoint,
)

NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
# The length prefix is one byte; Talos endpoints are at most 23 bytes of protobuf.
_ENDPOINT_PLAINTEXT_MAX = 0xFF


class ClusterKey:
    """The cluster's AES-256 key, built from its base64 secret; ValueError if not 32 bytes."""

    __slots__ = ("_aesgcm", "_raw", "_secret")

    def __init__(self, secret: str) -> None:
        self._raw = decode_cluster_secret(secret)
        self._secret = secret
        self._aesgcm = AESGCM(self._raw)

    @property
    def raw(self) -> bytes:
        """The 32 key bytes."""
        return self._raw

    @property
    def secret(self) -> str:
        """The base64 cluster secret exactly as given."""
        return self._secret

    @property
    def wireguard_psk(self) -> str:
        """The secret as the canonical base64 `wg` accepts as a preshared key."""
        # Talos hands the secret to WireGuard verbatim; `wg` insists on canonical base64, which
        # every generated secret already is, so this only differs for hand-written oddities.
        return base64.b64encode(self._raw).decode("ascii")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        # Never print key material: keys end up in logs and tracebacks.
        return "ClusterKey(<redacted>)"


def seal_data(key: ClusterKey, plaintext: bytes, nonce: bytes) -> bytes:
    """AES-256-GCM `nonce || ct || tag` with no AAD; ValueError unless the nonce is 12 bytes."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    return nonce + key._aesgcm.encrypt(nonce, plaintext, None)


def open_data(key: ClusterKey, blob: bytes) -> bytes:
    """The plaintext of a seal_data blob; SealingError if it is short, forged or for another key."""
    if len(blob) < NONCE_SIZE + TAG_SIZE:
        raise SealingError(f"sealed data too short: {len(blob)} bytes")
    try:
        return key._aesgcm.decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], None)
    except InvalidTag:
        raise SealingError("sealed data failed authentication") from None


def _ecb(key: ClusterKey, data: bytes, *, encrypt: bool) -> bytes:
    # ECB is what Talos uses for endpoints (deterministic so the server can dedupe); see module doc.
    cipher = Cipher(algorithms.AES(key.raw), modes.ECB())
    context = cipher.encryptor() if encrypt else cipher.decryptor()
    return context.update(data) + context.finalize()


def seal_endpoint(key: ClusterKey, plaintext: bytes) -> bytes:
    """AES-ECB over `len || plaintext` zero-padded to 16; ValueError if over 255 bytes."""
    if len(plaintext) > _ENDPOINT_PLAINTEXT_MAX:
        raise ValueError(f"endpoint plaintext too long: {len(plaintext)} bytes")
    framed = bytes([len(plaintext)]) + plaintext
    framed += bytes(-len(framed) % BLOCK_SIZE)
    return _ecb(key, framed, encrypt=True)


def open_endpoint(key: ClusterKey, blob: bytes) -> bytes:
    """The plaintext of a seal_endpoint blob; SealingError if it cannot be one."""
    if not blob or len(blob) % BLOCK_SIZE:
        raise SealingError(f"sealed endpoint is not a positive multiple of 16: {len(blob)} bytes")
    framed = _ecb(key, blob, encrypt=False)
    size = framed[0]
    if 1 + size > len(framed):
        raise SealingError("sealed endpoint length byte exceeds the blob")
    # Go does not look at the padding, but it always writes zeros; insisting on them rejects
    # almost every blob sealed with another key, which ECB alone cannot detect.
    if any(framed[1 + size :]):
        raise SealingError("sealed endpoint has non-zero padding")
    return framed[1 : 1 + size]


def seal_record(key: ClusterKey, record: AffiliateRecord, nonce: bytes) -> bytes:
    """Encode and seal a record as Talos affiliate data; ValueError as from encode/seal_data."""
    return seal_data(key, encode_affiliate(record), nonce)


def open_record(key: ClusterKey, blob: bytes) -> AffiliateRecord:
    """Open and decode affiliate data; SealingError or RecordError on any failure."""
    return decode_affiliate(open_data(key, blob))


def seal_endpoint_addr(key: ClusterKey, addr: EndpointAddr) -> bytes:
    """Encode and seal one endpoint (16 bytes for IPv4, 32 for IPv6); ValueError on a bad port."""
    return seal_endpoint(key, encode_endpoint(addr))


def open_endpoint_addr(key: ClusterKey, blob: bytes) -> EndpointAddr:
    """Open and decode one endpoint; SealingError or RecordError on any failure."""
    return decode_endpoint(open_endpoint(key, blob))


def open_affiliate(
    key: ClusterKey, data: bytes, endpoint_blobs: Iterable[bytes]
) -> DecodedAffiliate:
    """Open data (SealingError/RecordError if bad or empty) and endpoints (bad ones dropped)."""
    # Empty data is an endpoint-only affiliate ("no data yet" in the Go client): the caller skips
    # it like any other record that does not open. Bad endpoints are dropped as Go does.
    record = open_record(key, data)
    endpoints: list[EndpointAddr] = []
    for blob in endpoint_blobs:
        try:
            endpoints.append(open_endpoint_addr(key, blob))
        except (SealingError, RecordError):
            continue
    return DecodedAffiliate(record=record, endpoints=tuple(endpoints))

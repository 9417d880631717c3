"""Node and cluster identities, shaped as Talos makes them; randomness comes in as an argument.

- Node ID: base62 (jxskiss/base62, the library Talos uses) of 32 random bytes. It is also the
  affiliate ID on the wire.
- Cluster ID and cluster secret: standard base64 (with padding) of 32 random bytes each. The
  secret, decoded, is the AES-256 key for discovery data and, as a string, the WireGuard
  preshared key.

Callers pass `os.urandom(32)`; this module never draws randomness itself.
"""

from __future__ import annotations

import base64
import binascii

NODE_ID_SIZE = 32
CLUSTER_ID_SIZE = 32
CLUSTER_SECRET_SIZE = 32

# jxskiss/base62 StdEncoding (default.go): "[A-Za-z0-9]", in that order. Note that this is
# not the 0-9A-Za-z order of big-integer base62 libraries.
_B62_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B62_DECODE = {c: i for i, c in enumerate(_B62_ALPHABET)}
# 6-bit values 0b11110 and 0b11111 plus a sixth bit (62, 63) do not fit 62 symbols; jxskiss
# emits the low 5 bits and consumes only 5 input bits for any value matching this mask.
_COMPACT_MASK = 0x1E
_MASK_5_BITS = 0x1F
_MASK_6_BITS = 0x3F


def b62encode(data: bytes) -> str:
    """Encode bytes as jxskiss/base62 `EncodeToString` does ("" for b"")."""
    # A port of encodeV2: read 6 bits at a time from the least significant end of the input
    # seen as one big-endian integer.
    number = int.from_bytes(data, "big")
    remaining = len(data) * 8
    out: list[str] = []
    while remaining > 0:
        value = number & _MASK_6_BITS
        size = 6
        if value & _COMPACT_MASK == _COMPACT_MASK:
            if remaining > 6 or value > _MASK_5_BITS:
                size = 5
            value &= _MASK_5_BITS
        out.append(_B62_ALPHABET[value])
        number >>= size
        remaining -= size
    return "".join(out)


def b62decode(text: str) -> bytes:
    """Decode a jxskiss/base62 string ("" -> b""); ValueError on a character outside [A-Za-z0-9]."""
    # A port of decoder.decode: bytes come out least significant first and are reversed.
    out = bytearray()
    acc = 0
    bits = 0
    last = len(text) - 1
    for i, char in enumerate(text):
        value = _B62_DECODE.get(char)
        if value is None:
            raise ValueError(f"illegal base62 data at input byte {i}")
        acc |= value << bits
        if i == last:
            bits += value.bit_length()
        elif value & _COMPACT_MASK == _COMPACT_MASK:
            bits += 5
        else:
            bits += 6
        if bits >= 8:
            out.append(acc & 0xFF)
            bits %= 8
            acc >>= 8
    if bits > 0:
        out.append(acc & 0xFF)
    out.reverse()
    return bytes(out)


def _require_size(random: bytes, size: int, what: str) -> None:
    if len(random) != size:
        raise ValueError(f"{what} needs exactly {size} random bytes, got {len(random)}")


def new_node_id(random32: bytes) -> str:
    """A Talos node ID from 32 random bytes (base62); ValueError unless exactly 32 bytes."""
    _require_size(random32, NODE_ID_SIZE, "node ID")
    return b62encode(random32)


def new_cluster_id(random32: bytes) -> str:
    """A cluster ID from 32 random bytes (standard base64); ValueError unless exactly 32 bytes."""
    _require_size(random32, CLUSTER_ID_SIZE, "cluster ID")
    return base64.b64encode(random32).decode("ascii")


def new_cluster_secret(random32: bytes) -> str:
    """A cluster secret from 32 random bytes (standard base64); ValueError unless exactly 32."""
    _require_size(random32, CLUSTER_SECRET_SIZE, "cluster secret")
    return base64.b64encode(random32).decode("ascii")


def decode_cluster_secret(secret: str) -> bytes:
    """The 32-byte key a cluster secret encodes; ValueError (with the reason) if it is not one."""
    # Go's base64.StdEncoding ignores CR and LF, so a secret Talos accepts is accepted here.
    text = secret.replace("\r", "").replace("\n", "")
    try:
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("cluster secret is not valid standard base64") from None
    # strict_mode still tolerates surplus trailing "=", which Go rejects.
    if len(base64.b64encode(raw)) != len(text):
        raise ValueError("cluster secret is not valid standard base64")
    if len(raw) != CLUSTER_SECRET_SIZE:
        raise ValueError(
            f"cluster secret must decode to {CLUSTER_SECRET_SIZE} bytes, got {len(raw)}"
        )
    return raw


def is_valid_cluster_secret(secret: str) -> bool:
    """True if `secret` is standard base64 of exactly 32 bytes; never raises."""
    try:
        decode_cluster_secret(secret)
    except ValueError:
        return False
    return True

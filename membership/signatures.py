"""Signed requests: the subset of RFC 9421 (HTTP Message Signatures) our writes use.

A signed write carries (names as HTTP headers; over gRPC the same names are metadata keys):

    Signature-Input: ks=("@method" "@path" "content-digest");created=1700000000;
                     keyid="kn1.<node key>";alg="ed25519"
    Signature: ks=:<base64 Ed25519 signature of the signature base>:
    Kubespan-Endorsement: :<base64 cluster endorsement of the node key>:
    Content-Digest: sha-256=:<base64>:           (PUT, RFC 9530)
    Kubespan-Record-Digest: sha-256=:<base64>:   (DELETE: the data of the record it removes)

The signature base is built exactly as RFC 9421 section 2.5 says. Only what we emit is
parsed (one signature labelled `ks`, string and integer parameters): anything else is refused
rather than guessed at. The library implementations we looked at sign `requests` objects and
cover neither gRPC nor a server that must build the base from parsed parts, so this module
implements the subset itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from membership.keys import node_affiliate_id, node_key_of, public_bytes

LABEL = "ks"
ALG = "ed25519"
PUT_COMPONENTS = ("@method", "@path", "content-digest")
DELETE_COMPONENTS = ("@method", "@path", "kubespan-record-digest")

_INNER = re.compile(r'\(((?:"[^"\\]*"(?: "[^"\\]*")*)?)\)')
_PARAM = re.compile(r';([a-z][a-z0-9_.*-]*)=(-?[0-9]{1,15}|"[\x20\x21\x23-\x5b\x5d-\x7e]*")')
_BINARY = re.compile(r":([A-Za-z0-9+/=]*):")
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/=]*):")


class SignatureFormatError(ValueError):
    """A signature header that is not of the form we sign; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class SignatureInput:
    """One parsed Signature-Input member: covered components and the parameters."""

    components: tuple[str, ...]
    created: int
    keyid: str
    params: str  # the member's value exactly as received: it is the last line of the base


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The proof a front end hands to the core, built from what it received.

    `base` is the signature base the front end built from the request itself (method, path
    and digests it checked), so a signature over it binds the request's content.
    """

    node_key: bytes
    endorsement: bytes | None
    signature: bytes
    base: bytes
    created: int
    record_digest: bytes | None = None


def signature_params(components: Sequence[str], *, created: int, keyid: str) -> str:
    """The `@signature-params` value (RFC 9421 section 2.3) for our parameters."""
    inner = " ".join(f'"{c}"' for c in components)
    return f'({inner});created={created};keyid="{keyid}";alg="{ALG}"'


def signature_base(values: Sequence[tuple[str, str]], params: str) -> bytes:
    """The RFC 9421 signature base of (component, value) pairs and the params line."""
    lines = [f'"{name}": {value}' for name, value in values]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def sign(
    node_key: Ed25519PrivateKey, values: Sequence[tuple[str, str]], *, created: int
) -> tuple[str, str]:
    """(Signature-Input, Signature) values signing the (component, value) pairs."""
    keyid = node_affiliate_id(public_bytes(node_key))
    params = signature_params([name for name, _ in values], created=created, keyid=keyid)
    signature = node_key.sign(signature_base(values, params))
    return f"{LABEL}={params}", f"{LABEL}={binary(signature)}"


def read_proof(
    signature_input: str,
    signature: str,
    endorsement: str | None,
    component: Callable[[str], str | None],
    required: Sequence[str],
) -> SignedRequest:
    """The proof in a request's signature fields; raises SignatureFormatError.

    `component(name)` gives the request's value of a covered component (None: absent); the
    caller has checked that digests match the content. The signature itself is verified by
    the access rules, which know whose key it must be.
    """
    parsed = parse_signature_input(signature_input)
    if parsed.components != tuple(required):
        covered = " ".join(f'"{c}"' for c in required)
        raise SignatureFormatError(f"the signature must cover exactly ({covered})")
    node_key = node_key_of(parsed.keyid)
    if not node_key:
        raise SignatureFormatError("keyid must be the signer's bound affiliate ID")
    values = []
    for name in parsed.components:
        value = component(name)
        if value is None:
            raise SignatureFormatError(f"covered component {name!r} is missing")
        values.append((name, value))
    digest = component("kubespan-record-digest")
    return SignedRequest(
        node_key=node_key,
        endorsement=parse_binary(endorsement, "endorsement") if endorsement else None,
        signature=parse_signature(signature),
        base=signature_base(values, parsed.params),
        created=parsed.created,
        record_digest=parse_digest(digest) if digest is not None else None,
    )


def parse_signature_input(header: str) -> SignatureInput:
    """The `ks` member of a Signature-Input header; raises SignatureFormatError."""
    label, sep, value = header.strip().partition("=")
    if not sep or label != LABEL:
        raise SignatureFormatError(f"Signature-Input must hold one signature labelled {LABEL!r}")
    inner = _INNER.match(value)
    if inner is None:
        raise SignatureFormatError("Signature-Input does not start with a list of components")
    components = tuple(c.strip('"') for c in inner.group(1).split(" ") if c)
    params: dict[str, str] = {}
    pos = inner.end()
    while pos < len(value):
        param = _PARAM.match(value, pos)
        if param is None or param.group(1) in params:
            raise SignatureFormatError("Signature-Input has malformed or repeated parameters")
        params[param.group(1)] = param.group(2)
        pos = param.end()
    if params.get("alg", f'"{ALG}"') != f'"{ALG}"':
        raise SignatureFormatError(f"only alg={ALG!r} is accepted")
    created, keyid = params.get("created", ""), params.get("keyid", "")
    if not created or created.startswith('"') or not keyid.startswith('"'):
        raise SignatureFormatError("Signature-Input needs integer created and string keyid")
    return SignatureInput(components, int(created), keyid.strip('"'), value)


def parse_signature(header: str) -> bytes:
    """The `ks` signature bytes of a Signature header; raises SignatureFormatError."""
    label, sep, value = header.strip().partition("=")
    if not sep or label != LABEL:
        raise SignatureFormatError(f"Signature must hold one signature labelled {LABEL!r}")
    return parse_binary(value, "Signature")


def parse_binary(value: str, what: str) -> bytes:
    """A structured-field byte sequence `:base64:`; raises SignatureFormatError."""
    match = _BINARY.fullmatch(value.strip())
    try:
        if match is None:
            raise ValueError
        return base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureFormatError(f"{what} is not a byte sequence (:base64:)") from None


def binary(raw: bytes) -> str:
    """`raw` as a structured-field byte sequence."""
    return f":{base64.b64encode(raw).decode('ascii')}:"


def digest_header(content: bytes) -> str:
    """The RFC 9530 digest field value of `content` (sha-256 only)."""
    return f"sha-256={binary(hashlib.sha256(content).digest())}"


def parse_digest(value: str) -> bytes:
    """The sha-256 bytes of a digest field value; raises SignatureFormatError."""
    match = _DIGEST.fullmatch(value.strip())
    if match is None:
        raise SignatureFormatError("digest must be sha-256=:base64:")
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != hashlib.sha256().digest_size:
        raise SignatureFormatError("digest must be sha-256=:base64: of 32 bytes")
    return raw


def affiliate_path(cluster_id: str, affiliate_id: str) -> str:
    """The "@path" of an affiliate: its HTTP path, every reserved character escaped (gRPC
    signs this too, so one base format serves both transports)."""
    return f"/v1/clusters/{quote(cluster_id, safe='')}/affiliates/{quote(affiliate_id, safe='')}"


def update_content(data: bytes | None, endpoints: Sequence[bytes], ttl_seconds: float) -> bytes:
    """The canonical bytes of an update, what gRPC's content-digest covers.

    gRPC has no body bytes both sides agree on (protobuf encodings are not canonical), so the
    digest covers this encoding of the decoded fields instead: a presence byte and the data,
    the endpoints, the TTL in whole milliseconds; every length is a big-endian u32.
    """
    out = [b"kubespan update v1\x00", b"\x01" if data is not None else b"\x00"]
    out += (struct.pack(">I", len(data or b"")), data or b"")
    out.append(struct.pack(">I", len(endpoints)))
    for blob in endpoints:
        out += (struct.pack(">I", len(blob)), blob)
    out.append(struct.pack(">q", round(ttl_seconds * 1000)))
    return b"".join(out)


def record_digest(data: bytes) -> bytes:
    """What a delete names: the sha-256 of the data of the record it removes."""
    return hashlib.sha256(data).digest()

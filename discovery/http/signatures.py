"""HTTP Message Signatures (RFC 9421) on writes: the proof a request carries, for the core.

Building the signature base here, from the request as it arrived (method, raw path, the
digest checked against the body), is what binds a signature to this very request; the core
then verifies the signature and applies the rules (core/authz.py).
"""

from __future__ import annotations

import hashlib

from fastapi import Request

from discovery.core.errors import Unauthenticated
from membership.signatures import (
    DELETE_COMPONENTS,
    PUT_COMPONENTS,
    SignatureFormatError,
    SignedRequest,
    parse_digest,
    read_proof,
)


def _raw_path(request: Request) -> str:
    # "@path" is the path as sent, still percent-encoded (RFC 9421 section 2.2.6).
    raw: bytes | None = request.scope.get("raw_path")
    if raw is None:
        return str(request.scope["path"])
    return raw.split(b"?", 1)[0].decode("latin-1")


def _proof(request: Request, required: tuple[str, ...]) -> SignedRequest | None:
    headers = request.headers
    signature_input, signature = headers.get("signature-input"), headers.get("signature")
    if signature_input is None and signature is None:
        return None
    if signature_input is None or signature is None:
        raise Unauthenticated("Signature-Input and Signature must be sent together")

    def component(name: str) -> str | None:
        if name == "@method":
            return request.method
        if name == "@path":
            return _raw_path(request)
        return headers.get(name)

    try:
        return read_proof(
            signature_input, signature, headers.get("kubespan-endorsement"), component, required
        )
    except SignatureFormatError as exc:
        raise Unauthenticated(str(exc)) from exc


async def put_proof(request: Request) -> SignedRequest | None:
    """The proof of a PUT (None: unsigned); raises Unauthenticated when it is malformed or
    its Content-Digest does not match the body."""
    proof = _proof(request, PUT_COMPONENTS)
    if proof is not None:
        try:
            digest = parse_digest(request.headers["content-digest"])
        except SignatureFormatError as exc:
            raise Unauthenticated(f"Content-Digest: {exc}") from exc
        if digest != hashlib.sha256(await request.body()).digest():
            raise Unauthenticated("Content-Digest does not match the body")
    return proof


def delete_proof(request: Request) -> SignedRequest | None:
    """The proof of a DELETE (None: unsigned); raises Unauthenticated when malformed."""
    return _proof(request, DELETE_COMPONENTS)

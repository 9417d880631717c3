"""Signed writes over gRPC: the same RFC 9421 fields as HTTP, carried as call metadata.

gRPC has no method or path of its own in Talos' API, so the components are derived: "@method"
is PUT or DELETE and "@path" the HTTP path of the same affiliate, so one signature base format
serves both front ends. "content-digest" covers the canonical encoding of the decoded update
(membership.signatures.update_content) rather than protobuf bytes, which are not canonical.
"""

from __future__ import annotations

from collections.abc import Callable

from discovery.core.errors import Unauthenticated
from membership.signatures import (
    DELETE_COMPONENTS,
    PUT_COMPONENTS,
    SignatureFormatError,
    SignedRequest,
    affiliate_path,
    digest_header,
    read_proof,
    update_content,
)

Metadata = Callable[[str], str | None]


def _proof(
    metadata: Metadata, required: tuple[str, ...], values: dict[str, str]
) -> SignedRequest | None:
    signature_input, signature = metadata("signature-input"), metadata("signature")
    if signature_input is None and signature is None:
        return None
    if signature_input is None or signature is None:
        raise Unauthenticated("signature-input and signature must be sent together")

    def component(name: str) -> str | None:
        return values[name] if name in values else metadata(name)

    try:
        return read_proof(
            signature_input, signature, metadata("kubespan-endorsement"), component, required
        )
    except SignatureFormatError as exc:
        raise Unauthenticated(str(exc)) from exc


def update_proof(
    metadata: Metadata,
    cluster_id: str,
    affiliate_id: str,
    *,
    data: bytes | None,
    endpoints: list[bytes],
    ttl_seconds: float,
) -> SignedRequest | None:
    """The proof of an AffiliateUpdate (None: unsigned); raises Unauthenticated."""
    if metadata("signature-input") is None and metadata("signature") is None:
        return None  # the common Talos case: no digest to compute
    values = {
        "@method": "PUT",
        "@path": affiliate_path(cluster_id, affiliate_id),
        "content-digest": digest_header(update_content(data, endpoints, ttl_seconds)),
    }
    return _proof(metadata, PUT_COMPONENTS, values)


def delete_proof(metadata: Metadata, cluster_id: str, affiliate_id: str) -> SignedRequest | None:
    """The proof of an AffiliateDelete (None: unsigned); raises Unauthenticated."""
    values = {"@method": "DELETE", "@path": affiliate_path(cluster_id, affiliate_id)}
    return _proof(metadata, DELETE_COMPONENTS, values)

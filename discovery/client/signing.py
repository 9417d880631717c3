"""Signing our writes: the node key signs each request, the cluster's endorsement rides along.

Both clients ask a `RequestSigner` for the fields to send (HTTP headers, gRPC metadata; the
names are the same). The signer also remembers the data each affiliate last wrote, because a
signed delete must name the record it removes (membership/access.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from membership import keys
from membership.signatures import (
    DELETE_COMPONENTS,
    PUT_COMPONENTS,
    binary,
    digest_header,
    sign,
    update_content,
)


class RequestSigner:
    """Signs writes as one node; `node_id` is the bound affiliate id those writes must use."""

    def __init__(
        self,
        node_key: Ed25519PrivateKey,
        *,
        cluster_secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """With `cluster_secret`, the cluster's endorsement of the node key is derived locally
        (needed in locked clusters; open clusters only check the node's own signature)."""
        self._key = node_key
        public = keys.public_bytes(node_key)
        self.node_id = keys.node_affiliate_id(public)
        self._endorsement = (
            keys.endorse(keys.cluster_signing_key(cluster_secret), public)
            if cluster_secret is not None
            else None
        )
        self._clock = clock
        self._written: dict[tuple[str, str], bytes] = {}

    def _fields(self, values: list[tuple[str, str]]) -> dict[str, str]:
        signature_input, signature = sign(self._key, values, created=int(self._clock()))
        fields = {"signature-input": signature_input, "signature": signature}
        if self._endorsement is not None:
            fields["kubespan-endorsement"] = binary(self._endorsement)
        for name, value in values:
            if not name.startswith("@"):
                fields[name] = value
        return fields

    def wrote(self, cluster_id: str, affiliate_id: str, data: bytes | None) -> None:
        """Remember the data a successful update left (None: the data did not change)."""
        if data is not None:
            self._written[(cluster_id, affiliate_id)] = data

    def last_written(self, cluster_id: str, affiliate_id: str) -> bytes | None:
        """The data this signer last wrote to the affiliate, if it knows."""
        return self._written.get((cluster_id, affiliate_id))

    def http_put(self, method_path: str, body: bytes) -> dict[str, str]:
        """Headers signing a PUT of `body` to `method_path` (the raw, encoded path)."""
        values = [
            ("@method", "PUT"),
            ("@path", method_path),
            ("content-digest", digest_header(body)),
        ]
        assert tuple(n for n, _ in values) == PUT_COMPONENTS
        return self._fields(values)

    def grpc_update(
        self, path: str, data: bytes | None, endpoints: Sequence[bytes], ttl_seconds: float
    ) -> dict[str, str]:
        """Metadata signing an AffiliateUpdate; `path` is membership.signatures.affiliate_path."""
        digest = digest_header(update_content(data, endpoints, ttl_seconds))
        return self._fields([("@method", "PUT"), ("@path", path), ("content-digest", digest)])

    def delete(self, path: str, record: bytes) -> dict[str, str]:
        """Fields signing a DELETE of the record whose data is `record` (both transports)."""
        values = [
            ("@method", "DELETE"),
            ("@path", path),
            ("kubespan-record-digest", digest_header(record)),
        ]
        assert tuple(n for n, _ in values) == DELETE_COMPONENTS
        return self._fields(values)

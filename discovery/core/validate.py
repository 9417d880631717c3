"""Shape checks on requests, shared by both front ends; messages match the Talos service."""

from __future__ import annotations

from collections.abc import Sequence

from discovery.core.errors import InvalidArgument
from membership.limits import Limits

# How many endpoints one request may carry, as a multiple of the per-affiliate limit (so the
# upstream answer for 65 endpoints, "too many endpoints in the affiliate", is unchanged).
ENDPOINTS_PER_REQUEST_FACTOR = 4


def _identifier(value: str, max_bytes: int, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} can't be empty")
    if len(value) > max_bytes:  # never fewer bytes than characters
        raise InvalidArgument(f"{what} is too long")
    # Ids are text people and logs read: control characters (NUL breaks PostgreSQL text),
    # lone surrogates (not encodable at all) and other invisible characters are refused.
    # Talos ids are base64 and base62, far inside this.
    if not value.isprintable():
        raise InvalidArgument(f"{what} contains control or non-printable characters")
    if len(value.encode()) > max_bytes:
        raise InvalidArgument(f"{what} is too long")
    return value


def cluster_id(value: str, limits: Limits) -> str:
    """The cluster id if it is 1..max bytes of printable UTF-8; raises InvalidArgument."""
    return _identifier(value, limits.cluster_id_max, "cluster ID")


def affiliate_id(value: str, limits: Limits) -> str:
    """The affiliate id if it is 1..max bytes of printable UTF-8; raises InvalidArgument."""
    return _identifier(value, limits.affiliate_id_max, "affiliate ID")


def affiliate_data(value: bytes | None, limits: Limits) -> bytes | None:
    """The sealed data if within the size limit; raises InvalidArgument."""
    if value is not None and len(value) > limits.affiliate_data_max:
        raise InvalidArgument("affiliate data is too big")
    return value


def endpoints(values: Sequence[bytes], limits: Limits) -> tuple[bytes, ...]:
    """The sealed endpoints if each is within the size limit; raises InvalidArgument.

    A request may repeat endpoints the affiliate has (they merge), but not without bound:
    deduplicating a million copies costs a real share of a core for one request."""
    if len(values) > limits.affiliate_endpoints_max * ENDPOINTS_PER_REQUEST_FACTOR:
        raise InvalidArgument("too many endpoints in the request")
    for blob in values:
        if len(blob) > limits.affiliate_endpoint_max:
            raise InvalidArgument("affiliate endpoint is too big")
    return tuple(values)

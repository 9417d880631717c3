"""Shape checks on requests, shared by both front ends; messages match the Talos service."""

from __future__ import annotations

from collections.abc import Sequence

from discovery.core.errors import InvalidArgument
from membership.limits import Limits


def cluster_id(value: str, limits: Limits) -> str:
    """The cluster id if it is 1..max bytes of UTF-8; raises InvalidArgument."""
    if not value:
        raise InvalidArgument("cluster ID can't be empty")
    if len(value.encode()) > limits.cluster_id_max:
        raise InvalidArgument("cluster ID is too long")
    return value


def affiliate_id(value: str, limits: Limits) -> str:
    """The affiliate id if it is 1..max bytes of UTF-8; raises InvalidArgument."""
    if not value:
        raise InvalidArgument("affiliate ID can't be empty")
    if len(value.encode()) > limits.affiliate_id_max:
        raise InvalidArgument("affiliate ID is too long")
    return value


def affiliate_data(value: bytes | None, limits: Limits) -> bytes | None:
    """The sealed data if within the size limit; raises InvalidArgument."""
    if value is not None and len(value) > limits.affiliate_data_max:
        raise InvalidArgument("affiliate data is too big")
    return value


def endpoints(values: Sequence[bytes], limits: Limits) -> tuple[bytes, ...]:
    """The sealed endpoints if each is within the size limit; raises InvalidArgument."""
    for blob in values:
        if len(blob) > limits.affiliate_endpoint_max:
            raise InvalidArgument("affiliate endpoint is too big")
    return tuple(values)

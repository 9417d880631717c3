"""Errors the application core raises; each front end maps them to its own status codes.

ServiceError
├── InvalidArgument     the request is malformed (HTTP 400/422, gRPC INVALID_ARGUMENT)
├── ResourceExhausted   a capacity limit was hit (HTTP 422, gRPC RESOURCE_EXHAUSTED)
├── RateLimited         too many requests from one client IP (HTTP 429, gRPC RESOURCE_EXHAUSTED)
├── Unauthenticated     a write lacks a valid proof of its sender (HTTP 401, UNAUTHENTICATED)
├── PermissionDenied    the sender may not make this write (HTTP 403, PERMISSION_DENIED)
└── NotReady            storage is unavailable or the projection is still loading (503, UNAVAILABLE)

DamagedState            the stored state does not add up; the process refuses to serve it
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage.errors import StorageError


class ServiceError(Exception):
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = "invalid_argument"


class ResourceExhausted(ServiceError):
    code = "resource_exhausted"


class RateLimited(ServiceError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(ServiceError):
    code = "unavailable"


class Unauthenticated(ServiceError):
    code = "unauthenticated"


class PermissionDenied(ServiceError):
    code = "permission_denied"


class DamagedState(Exception):
    """The log or a snapshot does not add up (a gap, a bad checksum): never served."""


@contextmanager
def storage_unavailable() -> Iterator[None]:
    """Turn a storage failure into NotReady (503 / UNAVAILABLE) for the caller."""
    try:
        yield
    except StorageError as exc:
        raise NotReady("the event log is unavailable, try again later") from exc

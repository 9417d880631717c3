"""Domain errors raised by the membership commands.

DomainError
├── TooManyAffiliates   the cluster already holds the maximum number of affiliates
├── TooManyEndpoints    the affiliate would exceed the maximum number of endpoints
└── TTLTooLarge         the requested TTL is above the maximum
SealingError            a sealed blob could not be opened or decoded (node side)
RecordError             a decrypted record is not a valid protobuf message (node side)
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors a command raises when a request breaks an invariant."""


class TooManyAffiliates(DomainError):
    def __init__(self) -> None:
        super().__init__("too many affiliates in the cluster")


class TooManyEndpoints(DomainError):
    def __init__(self) -> None:
        super().__init__("too many endpoints in the affiliate")


class TTLTooLarge(DomainError):
    def __init__(self) -> None:
        super().__init__("ttl is too large")


class SealingError(Exception):
    """A blob failed authentication or had the wrong shape; the record is skipped."""


class RecordError(Exception):
    """Bytes that decrypted fine but do not decode as the expected protobuf message."""

"""Domain errors raised by the membership commands.

DomainError
├── TooManyAffiliates   the cluster already holds the maximum number of affiliates
├── TooManyEndpoints    the affiliate would exceed the maximum number of endpoints
└── TTLTooLarge         the requested TTL is above the maximum
SealingError            a sealed blob could not be opened or decoded (node side)
RecordError             a decrypted record is not a valid protobuf message (node side)
AccessError             a write is not allowed (membership.access)
├── NotAuthenticated    unsigned, badly signed, unendorsed or outside the clock window
└── NotPermitted        signed, but the rules forbid it (another's record, revoked key)
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


class AccessError(Exception):
    """A write the access rules refuse; the message names the rule (not a DomainError:
    the core maps these to 401/403, not to a capacity error)."""


class NotAuthenticated(AccessError):
    """The request does not prove who sent it."""


class NotPermitted(AccessError):
    """The sender is known, and the rules forbid this write."""

"""What a watcher sees: a snapshot first, then one change per visible event.

Each front end renders a change once and shares the bytes with every watcher of the cluster
(keyed weakly by the change), so fan-out to thousands of watchers costs one encoding per event.
"""

from __future__ import annotations

from msgspec import Struct

from membership.events import (
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateUpdated,
    EndpointsExpired,
    NodeRevoked,
)
from membership.events import Event as DomainEvent
from membership.model import Affiliate


# One Change per folded event, in every worker: a Struct is built in C (about 80 ns against
# 400 ns for a frozen dataclass). Compared by identity (eq=False), as the weak frame caches
# key on it; weakref=True rules out gc=False.
class Change(Struct, frozen=True, eq=False, weakref=True):
    """A visible change at `revision`: `affiliate` for an update, None for a deletion."""

    revision: int
    affiliate_id: str
    affiliate: Affiliate | None

    @property
    def deleted(self) -> bool:
        return self.affiliate is None


class WatchSnapshot(Struct, frozen=True, gc=False):
    """Every live affiliate of the cluster as of `revision` (the first watch message)."""

    revision: int
    affiliates: tuple[Affiliate, ...]


WatchMessage = WatchSnapshot | Change


def change_of(revision: int, event: DomainEvent) -> Change | None:
    """The change a watcher sees for `event`, or None when it is invisible (refresh, credit)."""
    match event:
        case AffiliateUpdated(affiliate=a) | EndpointsExpired(affiliate=a):
            return Change(revision, a.id, a)
        case AffiliateDeleted(affiliate_id=i) | AffiliateExpired(affiliate_id=i):
            return Change(revision, i, None)
        case NodeRevoked():
            # The revoked node's record goes with its key: watchers drop the peer.
            return Change(revision, event.affiliate_id, None)
    return None

"""What a watcher sees: a snapshot first, then one change per visible event.

A change is rendered once per front end and shared by every watcher of the cluster (the
caches below), so fan-out to thousands of watchers costs one encoding per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from membership.events import AffiliateDeleted, AffiliateExpired, AffiliateUpdated, EndpointsExpired
from membership.events import Event as DomainEvent
from membership.model import Affiliate


@dataclass(slots=True, eq=False)
class Change:
    """A visible change at `revision`: `affiliate` for an update, None for a deletion."""

    revision: int
    affiliate_id: str
    affiliate: Affiliate | None
    # Per-front-end renderings (e.g. "sse", "grpc"), filled on first use.
    rendered: dict[str, Any] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.affiliate is None


@dataclass(slots=True, frozen=True)
class WatchSnapshot:
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
    return None

"""One stored event as the cluster's history shows it (audit and time travel)."""

from __future__ import annotations

from discovery.core.values import HistoryEntry
from membership.codec import decode_event
from membership.events import AffiliateUpdated, EndpointsExpired
from storage.base import StoredEvent


def history_entry(record: StoredEvent) -> HistoryEntry:
    """The entry for `record`, naming the affiliate its event is about (if any)."""
    event = decode_event(record.type, record.data)
    affiliate = event.affiliate if isinstance(event, AffiliateUpdated | EndpointsExpired) else None
    affiliate_id = getattr(event, "affiliate_id", None) or (affiliate.id if affiliate else None)
    return HistoryEntry(
        record.revision, record.type, record.recorded_at, event, affiliate_id, affiliate
    )

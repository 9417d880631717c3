"""Who created which live affiliate, so one client cannot fill a cluster or spread itself over
a great many: caps on the affiliates a client holds in one cluster and on the clusters it
holds affiliates in.

This is each replica's own count of the creations it took, kept in memory: enough to stop
one address filling a cluster to its limit (and so locking its real nodes out) without any
shared state. Signed writes (locked clusters) close the rest.
"""

from __future__ import annotations

from collections.abc import Hashable

from discovery.core.changes import Change
from discovery.core.errors import ResourceExhausted


class Holdings:
    def __init__(self, affiliates_per_cluster: int, clusters: int) -> None:
        self._affiliates_cap = affiliates_per_cluster
        self._clusters_cap = clusters
        self._creator: dict[tuple[str, str], Hashable] = {}
        self._held: dict[Hashable, dict[str, int]] = {}

    def check(self, client: Hashable | None, cluster_id: str) -> None:
        """Raise ResourceExhausted if `client` may not create one more affiliate here."""
        if client is None:
            return
        held = self._held.get(client, {})
        in_cluster = held.get(cluster_id, 0)
        if self._affiliates_cap and in_cluster >= self._affiliates_cap:
            raise ResourceExhausted("too many affiliates from this address in the cluster")
        if self._clusters_cap and not in_cluster and len(held) >= self._clusters_cap:
            raise ResourceExhausted("too many clusters from this address")

    def created(self, client: Hashable | None, cluster_id: str, affiliate_id: str) -> None:
        key = (cluster_id, affiliate_id)
        if client is None or key in self._creator:
            return
        self._creator[key] = client
        held = self._held.setdefault(client, {})
        held[cluster_id] = held.get(cluster_id, 0) + 1

    def on_change(self, cluster_id: str, change: Change) -> None:
        """A projection listener: a deleted or expired affiliate frees its creator's slot."""
        if change.affiliate is not None:
            return
        client = self._creator.pop((cluster_id, change.affiliate_id), None)
        if client is None:
            return
        held = self._held[client]
        held[cluster_id] -= 1
        if not held[cluster_id]:
            del held[cluster_id]
            if not held:
                del self._held[client]

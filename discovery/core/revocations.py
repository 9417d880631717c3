"""Cutting a node out: revocations of node keys, part of the DiscoveryService.

A mixin rather than methods in service.py keeps that module to the write path it owns; the
revocation takes the same decide-and-append path as every other write (the cluster's lock,
conflict retries, read-your-writes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from discovery.core import authz, validate
from membership import commands
from membership.events import Event
from membership.limits import Limits

if TYPE_CHECKING:
    from discovery.core.projection import Projection


class Revocations:
    """`revoke_node` and `revoked_nodes`; the host class provides the attributes below."""

    _limits: Limits
    _projection: Projection

    async def _decide_and_append(self, stream: str, decide: Callable[[], list[Event]]) -> int:
        raise NotImplementedError  # pragma: no cover - provided by DiscoveryService

    def _check_ready(self) -> None:
        raise NotImplementedError  # pragma: no cover - provided by DiscoveryService

    async def revoke_node(self, cluster_id: str, node_key: bytes, signature: bytes) -> int:
        """Revoke a locked cluster's node key (idempotent): its record goes and its writes are
        refused from then on. Raises Unauthenticated or PermissionDenied for a bad revocation;
        returns the revision the revocation is visible at."""
        validate.cluster_id(cluster_id, self._limits)
        authz.check_revocation(cluster_id, node_key, signature)
        view = self._projection.view
        return await self._decide_and_append(
            cluster_id, lambda: commands.revoke_node(view(cluster_id), node_key, signature)
        )

    def revoked_nodes(self, cluster_id: str) -> list[bytes]:
        """The node keys the cluster revoked, sorted."""
        validate.cluster_id(cluster_id, self._limits)
        self._check_ready()
        return sorted(self._projection.view(cluster_id).revoked)

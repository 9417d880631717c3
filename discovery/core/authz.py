"""Authorization of writes: the access rules of membership.access, in the core's terms.

The stateless checks (ids, endorsement, signature, clock window) run before the cluster's
lock, so verification does not serialize a cluster's writers; the checks against the
cluster's state (revocations, which record a delete removes) run under it, on the view the
command decides against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from discovery.core.errors import PermissionDenied, Unauthenticated
from membership import access, keys
from membership.errors import AccessError, NotAuthenticated
from membership.model import ClusterView
from membership.signatures import SignedRequest


def _mapped(exc: AccessError) -> Exception:
    if isinstance(exc, NotAuthenticated):
        return Unauthenticated(str(exc))
    return PermissionDenied(str(exc))


@lru_cache(maxsize=4096)
def _endorsed(cluster_key: bytes, node_key: bytes, endorsement: bytes) -> bool:
    # A node sends the same endorsement with every write: verify it once, not per request.
    return keys.is_endorsed(cluster_key, node_key, endorsement)


@dataclass(frozen=True, slots=True)
class Grant:
    """A write that passed the stateless rules; `check` applies the rest to a view."""

    affiliate_id: str
    deleting: bool
    grant: access.Grant

    def check(self, view: ClusterView) -> ClusterView:
        """`view`, once the rules that depend on it pass; raises PermissionDenied."""
        try:
            access.check_view(view, self.affiliate_id, self.grant, deleting=self.deleting)
        except AccessError as exc:
            raise _mapped(exc) from exc
        return view


def authorize(
    cluster_id: str,
    affiliate_id: str,
    proof: SignedRequest | None,
    now: datetime,
    *,
    deleting: bool,
) -> Grant:
    """The grant for this write; raises Unauthenticated or PermissionDenied."""
    try:
        grant = access.authorize(cluster_id, affiliate_id, proof, int(now.timestamp()), _endorsed)
    except AccessError as exc:
        raise _mapped(exc) from exc
    return Grant(affiliate_id, deleting, grant)


def check_revocation(cluster_id: str, node_key: bytes, signature: bytes) -> None:
    """Raises unless this is the locked cluster's revocation of `node_key`."""
    try:
        access.check_revocation(cluster_id, node_key, signature)
    except AccessError as exc:
        raise _mapped(exc) from exc

"""HTTP: affiliates of a cluster, and the cluster's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from discovery.http.deps import LimitedServiceDep, path_id
from discovery.http.schemas import (
    AffiliateList,
    AffiliateOut,
    AffiliateUpdate,
    History,
    HistoryEvent,
    RevisionResponse,
    iso,
)
from membership.events import AffiliateUpdated, EndpointsExpired

_TTL_CLAMP = 10.0**9

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])


def _revision(revision: int) -> Response:
    # Written directly: the hottest response of the API, and validating one int through the
    # response model costs more than building it.
    return Response(f'{{"revision":{revision}}}'.encode(), media_type="application/json")


@router.put("/{cluster}/affiliates/{affiliate}", response_model=RevisionResponse)
async def put_affiliate(
    cluster: str, affiliate: str, body: AffiliateUpdate, service: LimitedServiceDep
) -> Response:
    """Create or update an affiliate; data replaces, endpoints merge. Durable on return."""
    revision = await service.update_affiliate(
        path_id(cluster, "cluster ID"),
        path_id(affiliate, "affiliate ID"),
        data=body.data,
        endpoints=body.endpoints,
        # Clamped so absurd values fail as "ttl is too large", not as a timedelta overflow.
        ttl=timedelta(seconds=min(body.ttl, _TTL_CLAMP)),
    )
    return _revision(revision)


@router.delete("/{cluster}/affiliates/{affiliate}", response_model=RevisionResponse)
async def delete_affiliate(cluster: str, affiliate: str, service: LimitedServiceDep) -> Response:
    """Delete an affiliate; deleting a missing one succeeds too."""
    revision = await service.delete_affiliate(
        path_id(cluster, "cluster ID"), path_id(affiliate, "affiliate ID")
    )
    return _revision(revision)


@router.get("/{cluster}/affiliates", response_model=AffiliateList)
async def list_affiliates(cluster: str, service: LimitedServiceDep) -> AffiliateList:
    """Every live affiliate of the cluster, with the revision the list reflects."""
    revision, affiliates = service.list_affiliates(path_id(cluster, "cluster ID"))
    return AffiliateList(revision=revision, affiliates=[AffiliateOut.of(a) for a in affiliates])


@router.get("/{cluster}/events", response_model=History)
async def history(
    cluster: str,
    service: LimitedServiceDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> History:
    """The cluster's events after `after`, oldest first (audit and time travel)."""
    horizon, entries = await service.history(path_id(cluster, "cluster ID"), after, limit)
    events = []
    for entry in entries:
        affiliate = None
        if isinstance(entry.event, AffiliateUpdated | EndpointsExpired):
            affiliate = AffiliateOut.of(entry.event.affiliate)
        events.append(
            HistoryEvent(
                revision=entry.revision,
                type=entry.type,
                recorded_at=iso(datetime.fromtimestamp(entry.recorded_at, UTC)),
                affiliate_id=getattr(entry.event, "affiliate_id", None)
                or (affiliate.id if affiliate else None),
                affiliate=affiliate,
            )
        )
    return History(horizon=horizon, events=events)

"""HTTP: affiliates of a cluster, and the cluster's history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from discovery.core.errors import InvalidArgument
from discovery.http.deps import AdmittedCoreDep, client_ip_of, path_id
from discovery.http.schemas import (
    AffiliateList,
    AffiliateOut,
    AffiliateUpdate,
    GoneResponse,
    History,
    HistoryEvent,
    RevisionResponse,
    aware,
    iso,
)
from discovery.http.signatures import delete_proof, put_proof

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])


def _revision(revision: int) -> Response:
    # Written directly: the hottest response of the API, and validating one int through the
    # response model costs more than building it.
    return Response(f'{{"revision":{revision}}}'.encode(), media_type="application/json")


@router.put("/{cluster}/affiliates/{affiliate}", response_model=RevisionResponse)
async def put_affiliate(
    cluster: str, affiliate: str, body: AffiliateUpdate, request: Request, core: AdmittedCoreDep
) -> Response:
    """Create or update an affiliate; data replaces, endpoints merge. Durable on return."""
    revision = await core.update_affiliate(
        path_id(cluster, "cluster ID"),
        path_id(affiliate, "affiliate ID"),
        data=body.data,
        endpoints=body.endpoints,
        ttl_seconds=body.ttl,
        client_ip=client_ip_of(request),
        proof=await put_proof(request),
    )
    return _revision(revision)


@router.delete("/{cluster}/affiliates/{affiliate}", response_model=RevisionResponse)
async def delete_affiliate(
    cluster: str, affiliate: str, core: AdmittedCoreDep, request: Request
) -> Response:
    """Delete an affiliate; deleting a missing one succeeds too."""
    revision = await core.delete_affiliate(
        path_id(cluster, "cluster ID"), path_id(affiliate, "affiliate ID"), delete_proof(request)
    )
    return _revision(revision)


@router.get(
    "/{cluster}/affiliates",
    response_model=AffiliateList,
    responses={410: {"model": GoneResponse, "description": "older than the retained log"}},
)
async def list_affiliates(
    cluster: str,
    request: Request,
    core: AdmittedCoreDep,
    at: Annotated[int | None, Query(ge=0, description="membership as of this revision")] = None,
    at_time: Annotated[
        datetime | None, Query(description="membership as of this RFC 3339 time")
    ] = None,
) -> AffiliateList:
    """Every live affiliate of the cluster, with the revision the list reflects.

    With `at` or `at_time`, the membership as it was then (time travel), rebuilt from the
    retained log; 410 names the oldest revision that can still be rebuilt.
    """
    cluster_id = path_id(cluster, "cluster ID")
    if at is not None and at_time is not None:
        raise InvalidArgument("give at or at_time, not both")
    when = at if at is not None else aware(at_time)
    if when is None:
        revision, affiliates = core.list_affiliates(cluster_id, client_ip_of(request))
    else:
        revision, affiliates = await core.affiliates_at(cluster_id, when)
    return AffiliateList(revision=revision, affiliates=[AffiliateOut.of(a) for a in affiliates])


@router.get("/{cluster}/events", response_model=History)
async def history(
    cluster: str,
    core: AdmittedCoreDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> History:
    """The cluster's events after `after`, oldest first (audit and time travel)."""
    horizon, entries = await core.history(path_id(cluster, "cluster ID"), after, limit)
    events = [
        HistoryEvent(
            revision=entry.revision,
            type=entry.type,
            recorded_at=iso(entry.recorded_at),
            affiliate_id=entry.affiliate_id,
            affiliate=AffiliateOut.of(entry.affiliate) if entry.affiliate is not None else None,
        )
        for entry in entries
    ]
    return History(horizon=horizon, events=events)

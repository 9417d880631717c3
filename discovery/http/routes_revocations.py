"""HTTP: revocations of node keys (`kubespan evict`); there is no gRPC equivalent in Talos'
API, so cutting a node out is an HTTP call."""

from __future__ import annotations

import binascii

from fastapi import APIRouter, Response

from discovery.core.errors import InvalidArgument
from discovery.http.deps import AdmittedCoreDep, path_id
from discovery.http.schemas import RevisionResponse, RevocationIn, RevocationList
from membership.codec import decode_b64, encode_b64

router = APIRouter(prefix="/v1/clusters", tags=["revocations"])


def _b64(value: str, what: str) -> bytes:
    try:
        return decode_b64(value)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"{what} is not standard base64") from exc


@router.post("/{cluster}/revocations", response_model=RevisionResponse)
async def revoke(cluster: str, body: RevocationIn, core: AdmittedCoreDep) -> Response:
    """Revoke a node key: its record is deleted and its writes are refused from now on."""
    revision = await core.revoke_node(
        path_id(cluster, "cluster ID"),
        _b64(body.node_key, "node_key"),
        _b64(body.signature, "signature"),
    )
    return Response(f'{{"revision":{revision}}}'.encode(), media_type="application/json")


@router.get("/{cluster}/revocations", response_model=RevocationList)
async def revocations(cluster: str, core: AdmittedCoreDep) -> RevocationList:
    """The node keys the cluster revoked."""
    revision = core.status().revision
    keys = core.revoked_nodes(path_id(cluster, "cluster ID"))
    return RevocationList(revision=revision, node_keys=[encode_b64(k) for k in keys])

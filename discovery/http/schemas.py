"""Pydantic request and response bodies of the HTTP API (the domain uses dataclasses)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from membership.codec import decode_b64, encode_b64
from membership.model import Affiliate


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return decode_b64(value)
    except ValueError as exc:
        raise ValueError("is not valid standard base64") from exc


Base64Bytes = Annotated[bytes, BeforeValidator(_b64)]
b64 = encode_b64


def aware(at: datetime | None) -> datetime | None:
    """A query time as UTC-aware (a time without an offset is taken as UTC)."""
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HelloRequest(_Strict):
    cluster_id: str
    client_version: str = ""


class HelloResponse(_Strict):
    client_ip: str | None = Field(description="the client IP as the service sees it")
    redirect: str | None = Field(description="an endpoint the client should use instead")
    server_version: str


class AffiliateUpdate(_Strict):
    data: Base64Bytes | None = Field(None, description="sealed affiliate data, base64")
    endpoints: list[Base64Bytes] = Field(default_factory=list, max_length=1024)
    ttl: float = Field(gt=0, allow_inf_nan=False, description="seconds until the affiliate expires")


class RevisionResponse(_Strict):
    revision: int


class AffiliateOut(_Strict):
    id: str
    data: str
    endpoints: list[str]
    expires_at: str

    @classmethod
    def of(cls, affiliate: Affiliate) -> AffiliateOut:
        return cls(
            id=affiliate.id,
            data=b64(affiliate.data),
            endpoints=[b64(e.data) for e in affiliate.endpoints],
            expires_at=iso(affiliate.expires_at),
        )


class AffiliateList(_Strict):
    revision: int
    affiliates: list[AffiliateOut]


class HistoryEvent(_Strict):
    revision: int
    type: str
    recorded_at: str
    affiliate_id: str | None
    affiliate: AffiliateOut | None


class History(_Strict):
    horizon: int = Field(description="events at or below this revision may have been compacted")
    events: list[HistoryEvent]


class RevocationIn(BaseModel):
    """A node key and the cluster key's revocation of it, both standard base64."""

    model_config = ConfigDict(extra="forbid")
    node_key: str
    signature: str


class RevocationList(BaseModel):
    revision: int
    node_keys: list[str]


class GoneDetail(_Strict):
    code: str
    message: str
    oldest: int = Field(description="the oldest revision the retained log can rebuild")


class GoneResponse(_Strict):
    error: GoneDetail


class StatusResponse(_Strict):
    ready: bool
    revision: int
    clusters: int
    affiliates: int
    endpoints: int
    watchers: int
    version: str

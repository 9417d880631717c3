"""Service settings: flags override `DISCOVERY_*` environment variables, which override defaults."""

from __future__ import annotations

import os
from datetime import timedelta

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from membership import limits as L
from membership.limits import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISCOVERY_", extra="forbid")

    http_addr: str = ":3001"
    grpc_addr: str = ":3000"
    # Empty disables the listener.
    metrics_addr: str = ":2122"
    storage: str = "sqlite:///./data/discovery.db"
    # After `storage`: its validator reads the storage URL.
    workers: int = Field(
        1, ge=1, description="service processes sharing the ports ('auto': one per core)"
    )

    gc_interval: float = Field(60.0, gt=0, description="seconds between expiry passes")
    snapshot_interval: float = Field(600.0, gt=0, description="seconds between snapshots")
    retention: float = Field(86400.0, ge=0, description="seconds of history kept in the log")
    heartbeat_interval: float = Field(5.0, gt=0, description="seconds between liveness marks")

    redirect_endpoint: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    trust_x_real_ip: bool = False
    trust_x_forwarded_for: bool = False
    disable_client_ip: bool = False
    cors_origins: str = Field(
        "", description="comma-separated origins that may call the HTTP API ('*': any); empty=off"
    )
    access_log: bool = Field(False, description="log every HTTP request (method, path, status)")
    grpc_reflection: bool = Field(
        True, description="gRPC server reflection (grpcurl without protos)"
    )

    rate_limit: float = Field(L.IP_RATE_PER_SECOND, ge=0, description="requests/s per IP, 0=off")
    rate_burst: int = Field(L.IP_RATE_BURST, ge=1)
    max_watches_per_client: int = Field(
        L.CLUSTER_AFFILIATES_MAX, ge=0, description="open watches per client IP (/64), 0=off"
    )
    max_watches: int = Field(
        0, ge=0, description="open watches in total, 0=from the descriptor limit"
    )
    watch_lifetime: float = Field(
        3600.0, gt=0, description="seconds before a watch is ended (clients resume)"
    )
    max_affiliates_per_client: int = Field(
        L.CLUSTER_AFFILIATES_MAX // 2,
        ge=0,
        description="affiliates one client IP (/64) may create in a cluster, 0=off",
    )
    max_clusters_per_client: int = Field(
        64, ge=0, description="clusters one client IP (/64) may hold affiliates in, 0=off"
    )
    max_connections_per_client: int = Field(
        256, ge=0, description="open HTTP connections per client IP (/64), 0=off"
    )
    max_connections: int = Field(
        0, ge=0, description="open HTTP connections in total, 0=from the descriptor limit"
    )
    header_timeout: float = Field(10.0, gt=0, description="seconds to send a request's headers")
    body_timeout: float = Field(10.0, gt=0, description="seconds a request body may stall")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="request line and headers")
    watch_buffer: int = Field(
        L.WATCH_BUFFER, ge=1, description="queued changes per watcher before catch-up"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024)

    cluster_id_max: int = Field(L.CLUSTER_ID_MAX, ge=1)
    affiliate_id_max: int = Field(L.AFFILIATE_ID_MAX, ge=1)
    affiliate_data_max: int = Field(L.AFFILIATE_DATA_MAX, ge=1)
    affiliate_endpoint_max: int = Field(L.AFFILIATE_ENDPOINT_MAX, ge=1)
    affiliate_endpoints_max: int = Field(L.AFFILIATE_ENDPOINTS_MAX, ge=1)
    cluster_affiliates_max: int = Field(L.CLUSTER_AFFILIATES_MAX, ge=1)
    ttl_max: float = Field(L.TTL_MAX.total_seconds(), gt=0)

    log_level: str = "info"
    log_format: str = Field("json", pattern="^(json|text)$")

    @field_validator("http_addr", "grpc_addr", "metrics_addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        if value and parse_addr(value)[1] is None:
            raise ValueError("must be HOST:PORT or :PORT")
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value == "auto":
                return cpu_count()
            if not value.isdigit():
                raise ValueError("must be a positive integer or 'auto'")
        return value

    @field_validator("workers")
    @classmethod
    def _workers_share_storage(cls, value: int, info: ValidationInfo) -> int:
        # Each worker would fold its own private log: writes on one invisible to the others.
        if value > 1 and str(info.data.get("storage", "")).startswith("memory:"):
            raise ValueError("memory:// keeps its state inside one process; use 1 worker")
        return value

    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def limits(self) -> Limits:
        return Limits(
            cluster_id_max=self.cluster_id_max,
            affiliate_id_max=self.affiliate_id_max,
            affiliate_data_max=self.affiliate_data_max,
            affiliate_endpoint_max=self.affiliate_endpoint_max,
            affiliate_endpoints_max=self.affiliate_endpoints_max,
            cluster_affiliates_max=self.cluster_affiliates_max,
            ttl_max=timedelta(seconds=self.ttl_max),
        )


def parse_addr(addr: str) -> tuple[str, int | None]:
    """("host", port) from "host:port", "[v6]:port" or ":port" (host "" = all interfaces)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return addr, None
    return host.strip("[]"), int(port)


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, as a container's cpuset sets it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

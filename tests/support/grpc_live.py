"""A real gRPC listener (127.0.0.1, ephemeral port) around a real core, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from discovery.core.service import DiscoveryService
from discovery.proto import cluster_pb2_grpc
from discovery.runtime import Runtime
from discovery.settings import Settings
from storage.base import EventLog


@dataclass
class GrpcLive:
    settings: Settings
    service: DiscoveryService
    runtime: Runtime

    @property
    def port(self) -> int:
        port = self.runtime.grpc_port
        assert port is not None
        return port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self, options: Sequence[tuple[str, object]] = ()) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target, options=list(options))


def grpc_settings(**overrides: object) -> Settings:
    """Test defaults: in-memory log, ephemeral port, no rate limit."""
    values: dict[str, object] = {
        "storage": "memory://",
        "grpc_addr": "127.0.0.1:0",
        "rate_limit": 0,
        **overrides,
    }
    return Settings.model_validate(values)


def stub(channel: grpc.aio.Channel) -> cluster_pb2_grpc.ClusterStub:
    # The generated gRPC module has no type stubs.
    return cluster_pb2_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def grpc_live(
    settings: Settings | None = None, *, event_log: EventLog | None = None
) -> AsyncIterator[GrpcLive]:
    """Start the runtime (on `event_log`, else on `settings.storage`) with a gRPC listener."""
    settings = (settings or grpc_settings()).model_copy(
        update={"http_addr": "127.0.0.1:0", "metrics_addr": ""}
    )
    async with Runtime(settings, event_log=event_log) as runtime:
        yield GrpcLive(settings, runtime.core, runtime)

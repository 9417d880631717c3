"""Reconnect storm: every Watch stream opened at the same moment gets its snapshot."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from discovery.proto import cluster_pb2 as pb
from tests.support.grpc_live import grpc_live, grpc_settings, stub

pytestmark = pytest.mark.anyio

# Above grpc core's default queue of 1,000 unpicked calls, past which it used to drop some.
STREAMS = 2_000
CHANNELS = 4


async def test_every_stream_of_a_storm_gets_its_snapshot() -> None:
    settings = grpc_settings(max_watches_per_client=0)
    async with grpc_live(settings) as live:
        channels = [live.channel() for _ in range(CHANNELS)]
        outcomes: Counter[str] = Counter()

        async def watch(n: int) -> None:
            call = stub(channels[n % CHANNELS]).Watch(pb.WatchRequest(cluster_id=f"c{n % 50}"))
            try:
                first = await call.read()
                outcomes["snapshot" if isinstance(first, pb.WatchResponse) else "eof"] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1
            finally:
                call.cancel()

        try:
            async with asyncio.timeout(120):
                await asyncio.gather(*(watch(n) for n in range(STREAMS)))
        finally:
            for channel in channels:
                await channel.close()
    assert outcomes == {"snapshot": STREAMS}

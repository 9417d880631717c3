"""Admission through the core: IPv6 clients share a bucket per /64, waiters sleep once."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import pytest

from discovery.core.errors import RateLimited
from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.core.values import CoreOptions
from storage.memory import MemoryEventLog

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _core(clock: Clock, rate: float = 1.0, burst: int = 2) -> DiscoveryService:
    options = CoreOptions(rate_limit=rate, rate_burst=burst)
    return DiscoveryService(MemoryEventLog(), options, metrics=Metrics(), monotonic=clock)


async def test_addresses_of_one_ipv6_slash_64_share_a_bucket() -> None:
    core = _core(Clock())
    await core.admit(ip_address("2001:db8:1:2::1"))
    await core.admit(ip_address("2001:db8:1:2:ffff::9"))
    with pytest.raises(RateLimited):
        await core.admit(ip_address("2001:db8:1:2:abcd::1"))
    await core.admit(ip_address("2001:db8:1:3::1"))  # the next /64 is someone else


async def test_ipv4_addresses_are_limited_one_by_one() -> None:
    core = _core(Clock())
    for _ in range(2):
        await core.admit(ip_address("192.0.2.1"))
    with pytest.raises(RateLimited):
        await core.admit(ip_address("192.0.2.1"))
    await core.admit(ip_address("192.0.2.2"))


async def test_waiting_callers_each_sleep_once_for_their_own_slot() -> None:
    clock = Clock()
    core = _core(clock, rate=1000.0, burst=1)
    ip = ip_address("198.51.100.1")
    await core.admit(ip)
    # 50 callers waiting at once: all admitted, without any of them refused or spinning.
    async with asyncio.timeout(5):
        await asyncio.gather(*(core.admit(ip, wait_up_to=None) for _ in range(50)))
    with pytest.raises(RateLimited, match="request timeout"):
        await core.admit(ip, wait_up_to=0.001)


def test_client_version_labels_are_bounded() -> None:
    from discovery.core.metrics import HELLO_VERSION_LABELS

    metrics = Metrics()
    for minor in range(5000):
        metrics.count_hello(f"v1.{minor % 1000}.0")
    labels = {
        s.labels["client_version"]
        for family in metrics.registry.collect()
        if family.name == "discovery_server_hello_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert len(labels) == HELLO_VERSION_LABELS + 1
    assert "other" in labels

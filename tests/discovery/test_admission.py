"""Admission through the core: IPv6 clients share a bucket per /64, waiters sleep once."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import pytest

from discovery.core.errors import RateLimited
from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.core.values import CoreOptions
from discovery.runtime import Runtime
from discovery.settings import Settings
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


async def test_a_large_answer_is_charged_by_its_size() -> None:
    clock = Clock()
    settings = Settings(rate_limit=10.0, rate_burst=20)
    runtime = Runtime(settings, event_log=MemoryEventLog(), monotonic=clock, listeners=False)
    async with runtime:
        core = runtime.core
        for i in range(1000):
            await core.update_affiliate("big", f"a{i}", data=b"d", endpoints=[], ttl_seconds=60)
        ip = ip_address("192.0.2.9")
        await core.admit(ip)
        _, affiliates = core.list_affiliates("big", ip)  # 1000 affiliates: 9 tokens more
        assert len(affiliates) == 1000
        for _ in range(10):
            await core.admit(ip)
        with pytest.raises(RateLimited):
            await core.admit(ip)  # 20 - 1 - 9 - 10 = 0 left
        small = ip_address("192.0.2.10")
        await core.admit(small)
        core.list_affiliates("empty", small)  # a small answer costs nothing more
        for _ in range(19):
            await core.admit(small)

"""The agent tests' FakeDiscovery held to the same contract as the real clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from ipaddress import ip_address

import pytest

from discovery.client import DiscoveryClient
from discovery.core.ratelimit import RateLimiter
from membership.limits import Limits
from tests.discovery.client_contract import DiscoveryClientContract
from tests.discovery.client_harness import Options, Serve, Served
from tests.fakes import FakeDiscovery

CLIENT_IP = "203.0.113.7"


class TestFakeDiscoveryClient(DiscoveryClientContract):
    # It imitates our HTTP API, which the agent prefers.
    resumes = True
    revisions = True

    @pytest.fixture
    def serve(self) -> Serve:
        @contextlib.asynccontextmanager
        async def serve_(options: Options) -> AsyncIterator[Served]:
            fake = FakeDiscovery(
                client_ip=None if options.disable_client_ip else CLIENT_IP,
                redirect=options.redirect or None,
                limits=Limits(cluster_affiliates_max=options.cluster_affiliates_max),
                rate_limiter=RateLimiter(0.001, 1) if options.rate_limited else None,
            )

            async def stop() -> None:
                fake.down = True

            served = Served(ip_address(CLIENT_IP), fake.client, fake.stored, stop)
            try:
                yield served
            finally:
                await served.aclose()

        return serve_

    @pytest.fixture
    def unreachable(self) -> DiscoveryClient:
        fake = FakeDiscovery()
        fake.down = True
        return fake.client()

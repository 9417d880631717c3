"""Property-based fuzzing of every HTTP operation from the OpenAPI spec: never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from discovery.core.metrics import Metrics
from discovery.core.service import DiscoveryService
from discovery.http.app import create_app
from discovery.settings import Settings
from storage.memory import MemoryEventLog
from tests.support.process import ServiceProcess

# The schema only: the app is built around a core that is never started.
_metrics = Metrics()
_app = create_app(DiscoveryService(MemoryEventLog(), metrics=_metrics), Settings(), _metrics)
# The watch stream never ends on success, so it is exercised by the SSE tests instead.
schema = schemathesis.openapi.from_dict(_app.openapi()).exclude(path_regex="/watch$")


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    proc = ServiceProcess(
        "memory://", extra=["--rate-limit", "0", "--cluster-affiliates-max", "8"]
    ).start()
    try:
        yield proc.url
    finally:
        assert proc.stop() == 0


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_operation_answers_5xx(case: schemathesis.Case[Any], service_url: str) -> None:
    response = case.call(base_url=service_url, timeout=10)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) == {"code", "message"}

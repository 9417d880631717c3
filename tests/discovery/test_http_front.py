"""The fast write routes in discovery/http/front.py answer exactly as the FastAPI routes do."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client import generate_latest

from discovery.core.metrics import Metrics
from discovery.http.app import create_app
from discovery.settings import Settings
from storage.memory import MemoryEventLog
from tests.support.live import in_process

pytestmark = pytest.mark.anyio

BODY = {"data": base64.b64encode(b"sealed").decode(), "endpoints": [], "ttl": 60}


@asynccontextmanager
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Metrics]]:
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c, runtime.metrics


async def test_json_with_a_charset_is_the_common_form() -> None:
    async with client(Settings(rate_limit=0)) as (c, _):
        r = await c.put(
            "/v1/clusters/c/affiliates/a",
            content=b'{"ttl": 60, "data": "eA=="}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"revision": 1}
        listed = (await c.get("/v1/clusters/c/affiliates")).json()["affiliates"]
        assert [(a["id"], a["data"]) for a in listed] == [("a", "eA==")]


async def test_other_bodies_get_the_schema_answer() -> None:
    async with client(Settings(rate_limit=0)) as (c, _):
        r = await c.put(
            "/v1/clusters/c/affiliates/a",
            content=b"ttl=60",
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 422
        assert set(r.json()["error"]) == {"code", "message"}
        r = await c.put("/v1/clusters/c/affiliates/a", json={**BODY, "data": "%%%"})
        assert r.status_code == 422
        assert r.json()["error"]["message"] == "data: Value error, is not valid standard base64"
        # Valid JSON whose number overflows to infinity: refused as pydantic refuses it.
        r = await c.put(
            "/v1/clusters/c/affiliates/a",
            content=b'{"ttl": 1e999}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        assert r.json()["error"]["message"].startswith("ttl:")
        assert (await c.get("/v1/clusters/c/affiliates")).json()["affiliates"] == []


async def test_core_errors_have_the_common_shape() -> None:
    async with client(Settings(rate_limit=0)) as (c, _):
        r = await c.put("/v1/clusters/" + "c" * 257 + "/affiliates/a", json=BODY)
        assert r.status_code == 400
        assert r.json() == {
            "error": {"code": "invalid_argument", "message": "cluster ID is too long"}
        }
        r = await c.delete("/v1/clusters/%FF/affiliates/a")
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith("cluster ID is not valid")


async def test_rate_limited_writes_say_when_to_retry() -> None:
    async with client(Settings(rate_limit=1, rate_burst=1)) as (c, _):
        assert (await c.put("/v1/clusters/c/affiliates/a", json=BODY)).status_code == 200
        r = await c.delete("/v1/clusters/c/affiliates/a")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "rate_limited"


async def test_fast_and_schema_answers_are_counted_alike() -> None:
    async with client(Settings(rate_limit=0)) as (c, metrics):
        await c.put("/v1/clusters/c/affiliates/a", json=BODY)
        await c.put("/v1/clusters/c/affiliates/a", json={"ttl": 0})
        await c.delete("/v1/clusters/c/affiliates/a")
        await c.delete("/v1/clusters/c/affiliates/a/extra")
    text = generate_latest(metrics.registry).decode()
    assert 'api="http",code="200",operation="put_affiliate"} 1.0' in text
    assert 'api="http",code="422",operation="put_affiliate"} 1.0' in text
    assert 'api="http",code="200",operation="delete_affiliate"} 1.0' in text
    assert 'api="http",code="404",operation="unmatched"} 1.0' in text


async def test_an_unexpected_error_is_a_counted_500(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(rate_limit=0)
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:

        async def broken(*args: object, **kwargs: object) -> int:
            raise RuntimeError("bug")

        monkeypatch.setattr(runtime.core, "update_affiliate", broken)
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.put("/v1/clusters/c/affiliates/a", json=BODY)
        assert r.status_code == 500
        assert r.json() == {"error": {"code": "internal", "message": "internal error"}}
        text = generate_latest(runtime.metrics.registry).decode()
    assert 'api="http",code="500",operation="put_affiliate"} 1.0' in text

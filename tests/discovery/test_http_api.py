"""The HTTP API in process: behaviour of each route and a table of bad inputs."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client import generate_latest

from discovery.http.app import create_app
from discovery.settings import Settings
from storage.memory import MemoryEventLog
from tests.support.live import in_process

pytestmark = pytest.mark.anyio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(Settings(rate_limit=0, cluster_affiliates_max=3)):
        yield c


def path(cluster: str, affiliate: str | None = None) -> str:
    out = f"/v1/clusters/{quote(cluster, safe='')}"
    return out + (f"/affiliates/{quote(affiliate, safe='')}" if affiliate is not None else "")


async def test_put_then_list_returns_the_affiliate(client: httpx.AsyncClient) -> None:
    r = await client.put(
        path("c", "a"), json={"data": b64(b"sealed"), "endpoints": [b64(b"e1")], "ttl": 60}
    )
    assert r.status_code == 200
    revision = r.json()["revision"]
    listing = (await client.get(path("c") + "/affiliates")).json()
    assert listing["revision"] >= revision
    [affiliate] = listing["affiliates"]
    assert affiliate["id"] == "a"
    assert affiliate["data"] == b64(b"sealed")
    assert affiliate["endpoints"] == [b64(b"e1")]
    assert affiliate["expires_at"].endswith("Z")


async def test_endpoints_merge_and_data_replaces(client: httpx.AsyncClient) -> None:
    await client.put(
        path("c", "a"), json={"data": b64(b"v1"), "endpoints": [b64(b"e1")], "ttl": 60}
    )
    await client.put(path("c", "a"), json={"endpoints": [b64(b"e2"), b64(b"e1")], "ttl": 60})
    await client.put(path("c", "a"), json={"data": b64(b"v2"), "ttl": 60})
    [affiliate] = (await client.get(path("c") + "/affiliates")).json()["affiliates"]
    assert affiliate["data"] == b64(b"v2")
    assert affiliate["endpoints"] == [b64(b"e1"), b64(b"e2")]


async def test_ids_with_slash_plus_equals_round_trip(client: httpx.AsyncClient) -> None:
    cluster = "8XuV9TZHW08DOk3bVxQjH9i/+TBKjnh+j44tsCLSBzo="
    affiliate = "node/1+a=b"
    r = await client.put(path(cluster, affiliate), json={"data": b64(b"x"), "ttl": 60})
    assert r.status_code == 200, r.text
    listing = (await client.get(path(cluster) + "/affiliates")).json()
    assert [a["id"] for a in listing["affiliates"]] == [affiliate]
    history = (await client.get(path(cluster) + "/events")).json()
    assert [e["affiliate_id"] for e in history["events"]] == [affiliate]
    # A different cluster whose id is a prefix of the segment is untouched.
    assert (await client.get(path("8XuV9TZHW08DOk3bVxQjH9i") + "/affiliates")).json()[
        "affiliates"
    ] == []


async def test_delete_is_idempotent(client: httpx.AsyncClient) -> None:
    await client.put(path("c", "a"), json={"data": b64(b"x"), "ttl": 60})
    first = await client.delete(path("c", "a"))
    second = await client.delete(path("c", "a"))
    assert first.status_code == second.status_code == 200
    assert second.json()["revision"] == first.json()["revision"]
    assert (await client.get(path("c") + "/affiliates")).json()["affiliates"] == []


async def test_history_lists_events_in_order_with_paging(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.put(path("h", f"a{i}"), json={"data": b64(b"x"), "ttl": 60})
    await client.delete(path("h", "a0"))
    page1 = (await client.get(path("h") + "/events", params={"limit": 2})).json()
    after = page1["events"][-1]["revision"]
    page2 = (await client.get(path("h") + "/events", params={"after": after})).json()
    events = page1["events"] + page2["events"]
    assert [e["type"] for e in events] == ["AffiliateUpdated"] * 3 + ["AffiliateDeleted"]
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(revisions)
    assert events[-1]["affiliate_id"] == "a0" and events[-1]["affiliate"] is None


async def test_hello_reports_peer_ip_and_ignores_untrusted_headers(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/v1/hello",
        json={"cluster_id": "c", "client_version": "v1.9.0"},
        headers={"X-Real-IP": "203.0.113.9"},
    )
    assert r.status_code == 200
    assert r.json()["client_ip"] == "198.51.100.7"
    assert r.json()["redirect"] is None


async def test_hello_trusts_proxy_headers_when_configured() -> None:
    settings = Settings(
        rate_limit=0, trust_x_forwarded_for=True, redirect_endpoint="other.example:443"
    )
    async for client in _client(settings):
        r = await client.post(
            "/v1/hello",
            json={"cluster_id": "c"},
            headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"},
        )
        assert r.json()["client_ip"] == "203.0.113.9"
        assert r.json()["redirect"] == "other.example:443"


async def test_health_readiness_landing(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.put(path("c", "a"), json={"data": b64(b"x"), "ttl": 60})
    page = await client.get("/")
    assert page.status_code == 200
    assert "<th>affiliates</th><td>1</td>" in page.text
    assert (await client.get("/openapi.json")).status_code == 200


async def test_metrics_count_state() -> None:
    settings = Settings(rate_limit=0)
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.put(path("c", "a"), json={"data": b64(b"x"), "ttl": 60})
            await client.post("/v1/hello", json={"cluster_id": "c", "client_version": "v1.2.3"})
        text = generate_latest(runtime.metrics.registry).decode()
    assert "discovery_state_affiliates 1.0" in text
    assert 'discovery_server_hello_requests_total{client_version="v1.2"} 1.0' in text


async def test_rate_limit_answers_429_with_retry_after() -> None:
    async for client in _client(Settings(rate_limit=1, rate_burst=2)):
        codes = [
            (await client.put(path("c", "a"), json={"data": b64(b"x"), "ttl": 60})).status_code
            for _ in range(3)
        ]
        assert codes[:2] == [200, 200]
        refused = await client.put(path("c", "a"), json={"data": b64(b"x"), "ttl": 60})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # Health checks are never limited.
        assert (await client.get("/healthz")).status_code == 200


BIG = b64(b"x" * 2049)

# (name, method, url, kwargs, status, fragment of the error message)
BAD_INPUT: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    (
        "malformed json",
        "PUT",
        path("c", "new"),
        {"content": b"{bad", "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("body not an object", "PUT", path("c", "new"), {"json": [1, 2]}, 422, "body"),
    ("bad base64 data", "PUT", path("c", "new"), {"json": {"data": "!!!", "ttl": 5}}, 422, "data"),
    (
        "bad base64 endpoint",
        "PUT",
        path("c", "new"),
        {"json": {"endpoints": ["@@"], "ttl": 5}},
        422,
        "endpoints.0",
    ),
    (
        "data too big",
        "PUT",
        path("c", "new"),
        {"json": {"data": BIG, "ttl": 5}},
        400,
        "affiliate data is too big",
    ),
    (
        "endpoint too big",
        "PUT",
        path("c", "new"),
        {"json": {"endpoints": [b64(b"e" * 33)], "ttl": 5}},
        400,
        "affiliate endpoint is too big",
    ),
    (
        "cluster id too long",
        "PUT",
        path("c" * 257, "new"),
        {"json": {"ttl": 5}},
        400,
        "cluster ID is too long",
    ),
    (
        "affiliate id too long",
        "PUT",
        path("c", "a" * 257),
        {"json": {"ttl": 5}},
        400,
        "affiliate ID is too long",
    ),
    (
        "too many endpoints",
        "PUT",
        path("c", "a1"),
        {"json": {"endpoints": [b64(b"%02d" % i) for i in range(65)], "ttl": 5}},
        422,
        "too many endpoints in the affiliate",
    ),
    (
        "too many affiliates",
        "PUT",
        path("c", "fourth"),
        {"json": {"ttl": 5}},
        422,
        "too many affiliates in the cluster",
    ),
    ("ttl zero", "PUT", path("c", "new"), {"json": {"ttl": 0}}, 422, "ttl"),
    ("ttl negative", "PUT", path("c", "new"), {"json": {"ttl": -1}}, 422, "ttl"),
    ("ttl missing", "PUT", path("c", "new"), {"json": {"data": b64(b"x")}}, 422, "ttl"),
    ("ttl not a number", "PUT", path("c", "new"), {"json": {"ttl": "soon"}}, 422, "ttl"),
    ("ttl too large", "PUT", path("c", "new"), {"json": {"ttl": 1801}}, 400, "ttl is too large"),
    (
        "unknown field",
        "PUT",
        path("c", "new"),
        {"json": {"ttl": 5, "extra": 1}},
        422,
        "extra: unknown field",
    ),
    (
        "declared huge body",
        "PUT",
        path("c", "new"),
        {"content": b"x" * 70_000, "headers": {"content-type": "application/json"}},
        413,
        "larger",
    ),
    (
        "bad percent-encoding",
        "PUT",
        "/v1/clusters/%FF/affiliates/a",
        {"json": {"ttl": 5}},
        400,
        "cluster ID is not valid",
    ),
    (
        "empty hello cluster",
        "POST",
        "/v1/hello",
        {"json": {"cluster_id": ""}},
        400,
        "cluster ID can't be empty",
    ),
    ("history limit zero", "GET", path("c") + "/events", {"params": {"limit": 0}}, 422, "limit"),
    ("watch since negative", "GET", path("c") + "/watch", {"params": {"since": -1}}, 422, "since"),
    (
        "watch bad last-event-id",
        "GET",
        path("c") + "/watch",
        {"headers": {"Last-Event-ID": "abc"}},
        400,
        "Last-Event-ID",
    ),
    ("unknown route", "GET", "/v1/nothing", {}, 404, "Not Found"),
    ("wrong method", "POST", path("c") + "/affiliates", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "fragment"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    for name in ("a1", "a2", "a3"):
        await client.put(path("c", name), json={"data": b64(name.encode()), "ttl": 60})
    before = (await client.get(path("c") + "/affiliates")).json()

    r = await client.request(method, url, **kwargs)

    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert fragment in error["message"]
    assert error["code"]
    assert (await client.get(path("c") + "/affiliates")).json() == before


async def test_chunked_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    r = await client.put(
        path("c", "a"), content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert (await client.get(path("c") + "/affiliates")).json()["affiliates"] == []


async def test_requests_are_counted_by_route_and_status() -> None:
    settings = Settings(rate_limit=0)
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.put(path("c/x", "a"), json={"data": b64(b"x"), "ttl": 60})
            await client.put(path("c/x", "a"), json={"ttl": -1})
            await client.get("/nowhere")
        text = generate_latest(runtime.metrics.registry).decode()
    assert 'discovery_requests_total{api="http",code="200",operation="put_affiliate"} 1.0' in text
    assert 'discovery_requests_total{api="http",code="422",operation="put_affiliate"} 1.0' in text
    assert 'operation="unmatched"' in text

"""The HTTP and gRPC additions for browsers and tools: offline docs, the dashboard's files,
the live landing page's counts, CORS (off by default) and gRPC server reflection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from discovery.http.app import create_app
from discovery.settings import Settings
from storage.memory import MemoryEventLog
from tests.support.grpc_live import grpc_live, grpc_settings
from tests.support.live import in_process

pytestmark = pytest.mark.anyio


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(Settings(rate_limit=0)):
        yield c


@pytest.fixture
async def cors_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(rate_limit=0, cors_origins="https://ops.example, https://b.example/")
    async for c in _client(settings):
        yield c


async def test_docs_and_redoc_load_only_local_assets(client: httpx.AsyncClient) -> None:
    for page, assets in (
        ("/docs", ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css")),
        ("/redoc", ("/docs-assets/redoc.standalone.js",)),
    ):
        r = await client.get(page)
        assert r.status_code == 200
        assert "cdn" not in r.text.lower() and "googleapis" not in r.text
        for asset in assets:
            assert asset in r.text
            served = await client.get(asset)
            assert served.status_code == 200 and len(served.content) > 10_000
    assert (await client.get("/openapi.json")).status_code == 200


async def test_dashboard_and_its_files_are_served_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ui")
    assert page.status_code == 200
    assert "/ui/static/dashboard.js" in page.text
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    for name in ("dashboard.js", "sealing.js", "record.js", "dashboard.css", "landing.js"):
        r = await client.get(f"/ui/static/{name}")
        assert r.status_code == 200, name
    assert (await client.get("/ui/static/../routes_ui.py")).status_code == 404


async def test_landing_page_links_the_dashboard_and_docs_and_counts_live(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/v1/clusters/c/affiliates/a", json={"data": "eA==", "ttl": 60})
    page = (await client.get("/")).text
    for link in ('href="/ui"', 'href="/docs"', 'href="/redoc"', "/ui/static/landing.js"):
        assert link in page
    assert '<tr data-key="affiliates"><th>affiliates</th><td>1</td></tr>' in page
    status = (await client.get("/v1/status")).json()
    assert status["clusters"] == 1 and status["affiliates"] == 1 and status["ready"] is True
    assert status["revision"] >= 1


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/status", headers={"Origin": "https://ops.example"})
    assert "access-control-allow-origin" not in r.headers
    preflight = await client.options(
        "/v1/clusters/c/affiliates",
        headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_only_the_configured_origins(cors_client: httpx.AsyncClient) -> None:
    r = await cors_client.get("/v1/clusters/c/affiliates", headers={"Origin": "https://b.example"})
    assert r.headers["access-control-allow-origin"] == "https://b.example"
    preflight = await cors_client.options(
        "/v1/clusters/c%2Fd/affiliates/a",
        headers={
            "Origin": "https://ops.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ops.example"
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    other = await cors_client.get("/v1/status", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    # The hot routes answered by the front layer carry the headers too.
    put = await cors_client.put(
        "/v1/clusters/c/affiliates/a",
        json={"data": "ZA==", "ttl": 60},
        headers={"Origin": "https://ops.example"},
    )
    assert put.status_code == 200
    assert put.headers["access-control-allow-origin"] == "https://ops.example"


def test_cors_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCOVERY_CORS_ORIGINS", "https://a.example,*")
    assert Settings().cors_origin_list() == ["https://a.example", "*"]
    assert Settings(cors_origins="").cors_origin_list() == []


async def _reflect(target: str, request: reflection_pb2.ServerReflectionRequest) -> object:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for response in stub.ServerReflectionInfo(iter([request]), timeout=5):
            return response
    raise AssertionError("no reflection response")


async def test_grpc_reflection_lists_and_describes_the_cluster_service() -> None:
    async with grpc_live(grpc_settings()) as live:
        listed = await _reflect(
            live.target, reflection_pb2.ServerReflectionRequest(list_services="")
        )
        assert isinstance(listed, reflection_pb2.ServerReflectionResponse)
        names = {s.name for s in listed.list_services_response.service}
        assert "sidero.discovery.server.Cluster" in names
        described = await _reflect(
            live.target,
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="sidero.discovery.server.Cluster"
            ),
        )
        assert isinstance(described, reflection_pb2.ServerReflectionResponse)
        assert described.file_descriptor_response.file_descriptor_proto


async def test_grpc_reflection_can_be_turned_off() -> None:
    async with grpc_live(grpc_settings(grpc_reflection=False)) as live:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _reflect(live.target, reflection_pb2.ServerReflectionRequest(list_services=""))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

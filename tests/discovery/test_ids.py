"""Ids that no storage can hold or no log should print are refused at the edge, over HTTP as
over gRPC (the gRPC cases are in test_grpc_validation.py), with a 400 and nothing stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from discovery.http.app import create_app
from discovery.settings import Settings
from storage.memory import MemoryEventLog
from tests.support.live import in_process, live_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(rate_limit=0)
    async with in_process(settings, event_log=MemoryEventLog()) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


@pytest.mark.parametrize(
    "path",
    [
        "/v1/clusters/c%00/affiliates/a",
        "/v1/clusters/c/affiliates/a%00b",
        "/v1/clusters/c%1B/affiliates/a",
        "/v1/clusters/c%E2%80%A8/affiliates/a",  # U+2028, a line separator
    ],
)
async def test_control_characters_in_path_ids(client: httpx.AsyncClient, path: str) -> None:
    put = await client.put(path, json={"data": "ZA==", "ttl": 60})
    assert put.status_code == 400
    assert "non-printable characters" in put.json()["error"]["message"]
    assert (await client.delete(path)).status_code == 400
    listing = await client.get("/v1/clusters/c/affiliates")
    assert listing.json()["affiliates"] == []


@pytest.mark.parametrize("cluster_id", ["c\u0000", "\ud800", "c\u007f"])
async def test_hello_with_an_unusable_cluster_id(
    client: httpx.AsyncClient, cluster_id: str
) -> None:
    # json.dumps writes a lone surrogate as the escape "\ud800", which JSON allows.
    body = json.dumps({"cluster_id": cluster_id})
    r = await client.post("/v1/hello", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_argument"


@pytest.mark.parametrize("after", [2**63 - 1, 2**63, 10**30])
async def test_history_after_any_revision(tmp_path: Path, after: int) -> None:
    # On SQLite: a revision past 64 bits used to overflow the query (a 500).
    settings = Settings(rate_limit=0, storage=f"sqlite:///{tmp_path}/events.db")
    async with in_process(settings) as runtime:
        app = create_app(runtime.core, settings, runtime.metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            r = await http.get("/v1/clusters/c/events", params={"after": after})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == []


@pytest.mark.parametrize("last_event_id", ["²", "1²", "٣", "-1", "1.5"])
async def test_a_last_event_id_that_is_no_revision(last_event_id: str) -> None:
    # "²".isdigit() is True but int("²") fails: this used to be a 500.
    async with live_server() as live, httpx.AsyncClient(base_url=live.url, timeout=5) as http:
        r = await http.get(
            "/v1/clusters/c/watch", headers={b"Last-Event-ID": last_event_id.encode()}
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == "Last-Event-ID must be a revision number"

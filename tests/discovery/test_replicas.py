"""Several replicas on one PostgreSQL, as real processes: failover, crashes, database restarts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.support.http_api import history, record_watch
from tests.support.postgres import PostgresServer
from tests.support.process import ServiceProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres]

FAST = ["--rate-limit", "0", "--gc-interval", "0.5", "--heartbeat-interval", "0.2"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def replicas(postgres_db: str) -> Iterator[list[ServiceProcess]]:
    procs = [ServiceProcess(postgres_db, extra=FAST).start() for _ in range(2)]
    yield procs
    for proc in procs:
        proc.kill()


async def test_watcher_fails_over_to_another_replica_without_gaps(
    replicas: list[ServiceProcess],
) -> None:
    a, b = replicas
    seen: list[int] = []
    watcher = asyncio.create_task(record_watch(a.url, "c", seen))
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
        for i in range(60):
            r = await http.put(
                f"/v1/clusters/c/affiliates/n{i % 9}", json={"data": b64(f"{i}"), "ttl": 600}
            )
            assert r.status_code == 200
            if i == 30:
                while len(seen) < 20:
                    await asyncio.sleep(0.02)
                a.kill()
        await watcher
        assert seen[0] == -1, "the first message is a snapshot"
        before = seen[1:]
        assert before, "the watcher on A saw nothing before A died"
        after: list[int] = []
        resumed = asyncio.create_task(record_watch(b.url, "c", after, since=before[-1]))
        expected = [int(str(e["revision"])) for e in await history(b.url, "c")]
        expected = expected[expected.index(before[0]) :]
        async with asyncio.timeout(15):
            while before + after != expected:
                assert len(before + after) <= len(expected), "duplicate event after failover"
                await asyncio.sleep(0.05)
        resumed.cancel()


async def test_acknowledged_writes_survive_a_replica_crash(replicas: list[ServiceProcess]) -> None:
    acked: list[tuple[str, str]] = []

    async def writer(proc: ServiceProcess, prefix: str) -> None:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
            for i in range(400):
                name = f"{prefix}{i}"
                try:
                    r = await http.put(
                        f"/v1/clusters/k{i % 4}/affiliates/{name}",
                        json={"data": b64(name), "ttl": 600},
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append((f"k{i % 4}", name))

    a, b = replicas
    tasks = [asyncio.create_task(writer(a, "a")), asyncio.create_task(writer(b, "b"))]
    while len(acked) < 150:
        await asyncio.sleep(0.02)
    a.kill()
    await asyncio.gather(*tasks)
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
        for cluster in {c for c, _ in acked}:
            live = {
                x["id"]
                for x in (await http.get(f"/v1/clusters/{cluster}/affiliates")).json()["affiliates"]
            }
            missing = [n for c, n in acked if c == cluster and n not in live]
            assert not missing, f"acknowledged writes lost: {missing[:5]}"


async def test_gc_leader_crash_hands_expiry_to_another_replica(
    replicas: list[ServiceProcess],
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        leaders = [p for p in replicas if (await http.get(p.url + "/readyz")).json().get("leader")]
        assert len(leaders) == 1, "exactly one replica leads"
        leader = leaders[0]
        follower = next(p for p in replicas if p is not leader)
        for i in range(10):
            r = await http.put(
                f"{follower.url}/v1/clusters/gc/affiliates/n{i}", json={"data": b64("x"), "ttl": 2}
            )
            assert r.status_code == 200
        leader.kill()
        async with asyncio.timeout(30):
            while (await http.get(f"{follower.url}/v1/clusters/gc/affiliates")).json()[
                "affiliates"
            ]:
                await asyncio.sleep(0.2)
        assert (await http.get(follower.url + "/readyz")).json()["leader"] is True
    expired = [
        str(e["affiliate_id"])
        for e in await history(follower.url, "gc")
        if e["type"] == "AffiliateExpired"
    ]
    assert sorted(expired) == sorted(f"n{i}" for i in range(10)), "each affiliate expires once"


async def test_database_restart_makes_replicas_unready_then_recover(
    postgres_server: PostgresServer,
) -> None:
    procs = [ServiceProcess(postgres_server.url, extra=FAST).start() for _ in range(2)]
    acked: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def write(n: int) -> int:
                proc = procs[n % 2]
                try:
                    r = await http.put(
                        f"{proc.url}/v1/clusters/db/affiliates/n{n}",
                        json={"data": b64("x"), "ttl": 600},
                    )
                except httpx.HTTPError:
                    return 0
                if r.status_code == 200:
                    acked.append(f"n{n}")
                return r.status_code

            for n in range(50):
                assert await write(n) == 200
            postgres_server.stop()
            codes = [await write(n) for n in range(50, 60)]
            assert 500 not in codes and 200 not in codes, codes
            for proc in procs:
                async with asyncio.timeout(15):
                    while (await http.get(proc.url + "/readyz")).status_code != 503:
                        await asyncio.sleep(0.1)
            postgres_server.start()
            for proc in procs:
                async with asyncio.timeout(30):
                    while (await http.get(proc.url + "/readyz")).status_code != 200:
                        await asyncio.sleep(0.2)
            for n in range(60, 80):
                assert await write(n) == 200
            live = {
                a["id"]
                for a in (await http.get(f"{procs[0].url}/v1/clusters/db/affiliates")).json()[
                    "affiliates"
                ]
            }
            assert set(acked) <= live
    finally:
        for proc in procs:
            proc.kill()

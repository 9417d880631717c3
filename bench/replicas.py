"""Update throughput with one replica on SQLite, one on PostgreSQL, and two on PostgreSQL.

All three are measured in one run on one machine. The PostgreSQL server is a throwaway one
(the tests' helper), so the figures include a database sharing the machine's two cores.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from contextlib import ExitStack
from typing import Any

from bench.loadgen import LoadResult, request_maker, run_load
from bench.servers import free_port, running, service_argv
from tests.support.postgres import PostgresServer


async def _load(ports: list[int], duration: float, connections: int) -> dict[str, float]:
    per = max(1, connections // len(ports))
    results = await asyncio.gather(
        *(
            run_load(
                "127.0.0.1",
                port,
                request_maker(f"127.0.0.1:{port}"),
                connections=per,
                duration=duration,
            )
            for port in ports
        )
    )
    merged = LoadResult(
        sum(r.requests for r in results),
        sum(r.errors for r in results),
        max(r.seconds for r in results),
        [x for r in results for x in r.latencies],
    )
    return merged.summary()


async def _measure(storage: str, replicas: int, duration: float, connections: int) -> Any:
    ports = [free_port() for _ in range(replicas)]
    with ExitStack() as stack:
        for port in ports:
            stack.enter_context(running(service_argv(storage, port), port, "/readyz"))
        return await _load(ports, duration, connections)


async def run(duration: float = 8.0, connections: int = 64) -> dict[str, Any]:
    server = PostgresServer.create()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out: dict[str, Any] = {
                "sqlite_1": await _measure(f"sqlite:///{tmp}/e.db", 1, duration, connections),
                "postgres_1": await _measure(server.url_for("postgres"), 1, duration, connections),
            }
        # A fresh database, so the two-replica run does not start with the first run's log.
        await asyncio.to_thread(_createdb, server, "two")
        out["postgres_2"] = await _measure(server.url_for("two"), 2, duration, connections)
    finally:
        server.destroy()
    out["ratio_pg2_vs_pg1"] = round(
        out["postgres_2"]["throughput_rps"] / out["postgres_1"]["throughput_rps"], 3
    )
    out["settings"] = {"duration_s": duration, "connections": connections}
    return out


def _createdb(server: PostgresServer, name: str) -> None:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(server.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))

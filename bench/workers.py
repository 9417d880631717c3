"""Durable PUT throughput with 1, 2 and `auto` worker processes, on SQLite and on PostgreSQL.

`wrk -t1` at 32 and 256 connections (bench/http_update.py's request shape, rate limit off),
each configuration on a fresh database, configurations alternating within each round so the
ratios hold on a noisy machine. Server CPU is the supervisor's and its workers' together; the
throwaway PostgreSQL server (the tests' helper) shares the same two cores and is not counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from typing import Any

from bench.external import Sample
from bench.http_update import CONNECTIONS, body_parts, measure, median_of
from bench.servers import free_port, running, service_argv, wait_workers, worker_count
from tests.support.postgres import PostgresServer

WORKERS = ("1", "2", "auto")
# Sidero's Go discovery service on this machine (figures from the hot-path issue, measured with
# a Go gRPC load generator: in memory, no fsync). Not re-measured here: no Go toolchain.
SIDERO_GO_RPS = {32: 14_500.0, 256: 18_200.0}


async def run(duration: float = 5.0, rounds: int = 2) -> dict[str, Any]:
    load_average = os.getloadavg()
    payload, endpoints = body_parts()
    samples: dict[tuple[str, str, int], list[Sample]] = {}
    server = PostgresServer.create()
    server.start()
    try:
        for n in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                for workers in WORKERS:
                    database = f"bench_{n}_{workers}"
                    await asyncio.to_thread(_createdb, server, database)
                    storages = {
                        "sqlite": f"sqlite:///{tmp}/w{workers}.db",
                        "postgres": server.url_for(database),
                    }
                    for name, url in storages.items():
                        port = free_port()
                        argv = service_argv(url, port, "--workers", workers)
                        with running(argv, port, "/readyz") as proc:
                            wait_workers(port, workers)
                            measured = measure(port, proc.pid, payload, endpoints, duration)
                        for c, sample in measured.items():
                            samples.setdefault((name, workers, c), []).append(sample)
    finally:
        server.destroy()

    out: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in load_average],
        "cores": worker_count("auto"),
    }
    for (name, workers, c), group in samples.items():
        out.setdefault(name, {}).setdefault(f"workers_{workers}", {})[f"c{c}"] = median_of(group)

    def rps(name: str, workers: str, c: int) -> float:
        value: float = out[name][f"workers_{workers}"][f"c{c}"]["throughput_rps"]
        return value or 1.0

    for name in ("sqlite", "postgres"):
        for c in CONNECTIONS:
            for workers in WORKERS[1:]:
                key = f"ratio_{name}_{workers}_vs_1_c{c}"
                out[key] = round(rps(name, workers, c) / rps(name, "1", c), 3)
            best = max(rps(name, w, c) for w in WORKERS)
            out[f"ratio_{name}_best_vs_sidero_go_c{c}"] = round(best / SIDERO_GO_RPS[c], 3)
    out["settings"] = {
        "duration_s": duration,
        "rounds": rounds,
        "loadgen": "wrk -t1 --latency, Lua-prebuilt PUTs over 100 clusters x 100 affiliates",
        "sidero_go_reference_rps": SIDERO_GO_RPS,
    }
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        f"{'storage':<10}{'workers':>8}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'err':>6}{'lg cpu%':>9}{'srv cpu%':>9}{'srv us/req':>11}"
    ]
    for name in ("sqlite", "postgres"):
        for workers in WORKERS:
            for c in CONNECTIONS:
                s = result[name][f"workers_{workers}"][f"c{c}"]
                rows.append(
                    f"{name:<10}{workers:>8}{c:>6}{s['throughput_rps']:>10.0f}{s['p50_ms']:>9.2f}"
                    f"{s['p99_ms']:>9.2f}{s['errors']:>6.0f}{s['loadgen_cpu_pct']:>9.0f}"
                    f"{s['server_cpu_pct']:>9.0f}{s['server_cpu_us_per_req']:>11.0f}"
                )
    rows.append(f"auto = {result['cores']} workers here")
    for name in ("sqlite", "postgres"):
        for c in CONNECTIONS:
            rows.append(
                f"{name} at {c}: 2 workers / 1 = {result[f'ratio_{name}_2_vs_1_c{c}']}, "
                f"auto / 1 = {result[f'ratio_{name}_auto_vs_1_c{c}']}, best / Sidero's Go "
                f"server (issue's figure) = {result[f'ratio_{name}_best_vs_sidero_go_c{c}']}"
            )
    return "\n".join(rows)


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
    outcome = asyncio.run(run())
    print(table(outcome))
    print(json.dumps(outcome, indent=2))

"""Mesh convergence with real agents and WireGuard in network namespaces (needs root).

Measures, with the short test timings (reconcile 1 s, keepalive 2 s):
- join:   from the moment the last of N agents starts until every node reports every peer
          `up` (a handshake or authenticated traffic in each direction), then a ping over
          the mesh for every ordered pair;
- leave:  from `kubespan leave` on one node until no other node lists it;
- rejoin: from restarting that node (same state dir) until every pair is up again.

    python -m bench.mesh --nodes 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from membership.secrets import new_cluster_id, new_cluster_secret
from tests.support.netns import (
    Agent,
    HubService,
    Lab,
    mesh_config,
    missing_requirements,
    wait_for,
)

TIMEOUT = 300.0


def _all_up(agents: list[Agent]) -> bool:
    names = {a.node.hostname for a in agents}
    for agent in agents:
        status = agent.status()
        if status is None:
            return False
        states = {p["label"]: p["state"] for p in status["peers"]}
        if set(states) != names - {agent.node.hostname}:
            return False
        if any(state != "up" for state in states.values()):
            return False
    return True


def _ping_all(
    agents: list[Agent], sources: list[Agent] | None = None, timeout: float = 30.0
) -> tuple[int, int]:
    """Ping every other node's mesh address from each source until every pair answers.

    Returns (pairs that failed the first try, pairs). A first try can fail for a few
    seconds after both sides report `up`: when both ends initiate at once, one handshake
    initiation can reach a peer that does not know the sender yet and is only retried
    after WireGuard's 5 s REKEY_TIMEOUT.
    """
    ulas = {a.node.hostname: (a.status() or {})["self"]["address"] for a in agents}
    pending = [(a, b) for a in sources or agents for b in agents if a is not b]
    total = len(pending)
    first_failures: int | None = None
    deadline = time.monotonic() + timeout
    # In parallel: on 2 cores, 380 sequential `ip netns exec ping` take longer than the mesh
    # takes to converge.
    with ThreadPoolExecutor(max_workers=16) as pool:
        while pending:
            results = list(pool.map(lambda p: p[0].node.ping(ulas[p[1].node.hostname]), pending))
            pending = [pair for pair, ok in zip(pending, results, strict=True) if not ok]
            if first_failures is None:
                first_failures = len(pending)
            if pending and time.monotonic() > deadline:
                names = [(a.node.hostname, b.node.hostname) for a, b in pending]
                raise RuntimeError(f"no ping answer after {timeout:g}s: {names}")
    return first_failures or 0, total


def _run(nodes: int) -> dict[str, Any]:
    missing = missing_requirements()
    if missing:
        raise RuntimeError(f"the mesh benchmark needs {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="kubespan-bench-") as tmp_name, Lab() as lab:
        tmp = Path(tmp_name)
        service = HubService(lab, "memory://").start()
        config = tmp / "config.yaml"
        cluster = new_cluster_id(os.urandom(32))
        config.write_text(mesh_config(cluster, new_cluster_secret(os.urandom(32)), service.url))
        agents: list[Agent] = []
        try:
            for _ in range(nodes):
                node = lab.add_node()
                agents.append(Agent(node, config, tmp / node.hostname))
            for agent in agents:
                agent.start()
            last_start = time.monotonic()
            wait_for("the full mesh", lambda: _all_up(agents), timeout=TIMEOUT, interval=0.2)
            join = time.monotonic() - last_start
            first_failures, total = _ping_all(agents)
            join_ping = time.monotonic() - last_start

            leaver, others = agents[-1], agents[:-1]
            started = time.monotonic()
            leaver.cli("leave")
            wait_for(
                "everyone drops the leaver",
                lambda: all(
                    leaver.node.hostname
                    not in {p["label"] for p in (a.status() or {"peers": []})["peers"]}
                    for a in others
                ),
                timeout=TIMEOUT,
                interval=0.1,
            )
            leave = time.monotonic() - started
            if leaver.proc is not None:
                leaver.proc.wait(30)

            leaver.start()
            started = time.monotonic()
            wait_for("the rejoin", lambda: _all_up(agents), timeout=TIMEOUT, interval=0.2)
            rejoin = time.monotonic() - started
            rejoin_failures, rejoin_total = _ping_all(agents, sources=[leaver])
            rejoin_ping = time.monotonic() - started
        finally:
            for agent in agents:
                agent.stop()
            service.close()
    return {
        "nodes": nodes,
        "pairs": nodes * (nodes - 1) // 2,
        "join_up_seconds": round(join, 2),
        "join_ping_seconds": round(join_ping, 2),
        "ping_pairs": total,
        "ping_first_try_failures": first_failures,
        "leave_propagation_seconds": round(leave, 2),
        "rejoin_up_seconds": round(rejoin, 2),
        "rejoin_ping_seconds": round(rejoin_ping, 2),
        "rejoin_ping_pairs": rejoin_total,
        "rejoin_ping_first_try_failures": rejoin_failures,
        "timings": {"reconcile": "1s", "keepalive": "2s", "endpoint_timeout": "3s"},
    }


async def run(nodes: int = 20) -> dict[str, Any]:
    """The report for a mesh of `nodes` (see the module doc); RuntimeError if not runnable."""
    return await asyncio.to_thread(_run, nodes)


def _table(result: dict[str, Any]) -> str:
    rows = [
        ("nodes / tunnels", f"{result['nodes']} / {result['pairs']}"),
        ("join: every pair up", f"{result['join_up_seconds']:.2f} s after the last start"),
        ("join: every pair pings", f"{result['join_ping_seconds']:.2f} s after the last start"
                                   f" ({result['ping_first_try_failures']} of"
                                   f" {result['ping_pairs']} needed a retry)"),
        ("leave: dropped everywhere", f"{result['leave_propagation_seconds']:.2f} s"),
        ("rejoin: every pair up", f"{result['rejoin_up_seconds']:.2f} s after its start"),
        ("rejoin: its pairs ping", f"{result['rejoin_ping_seconds']:.2f} s after its start"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}   {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh")
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    print(_table(asyncio.run(run(args.nodes))))


if __name__ == "__main__":
    main()

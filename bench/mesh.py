"""Mesh timings with real agents and WireGuard in network namespaces, production defaults (root).

Every agent runs with no timing keys in its config (endpoint timeout 6 s, peer down 55 s,
reconcile 30 s, keepalive 25 s). Measured:
- failover: two nodes whose first two published endpoints are unroutable; time until both
  report each other `up` (both sides rotate through the two dead candidates);
- join:     N agents; from the last start until every node reports every peer `up`, then a
            ping over the mesh for every ordered pair; and, per (node, peer), from the
            peer's first handshake (WireGuard's time, whole seconds) to the first status
            poll that shows it `up`;
- vanish:   one node's link cut (`ip link set eth0 down` in its namespace): until every
            other node shows it `down`; then the link back: until every node shows it `up`;
- leave / rejoin: `kubespan leave` on one node until nobody lists it; restart until all up.

    python -m bench.mesh --nodes 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
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


def _statuses(agents: list[Agent]) -> list[dict[str, Any] | None]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda a: a.status(), agents))


class UpWatch:
    """Polls every agent; remembers, per (node, peer), when `up` was first seen and the
    peer's handshake time then."""

    def __init__(self, agents: list[Agent]) -> None:
        self.agents = agents
        self.first_up: dict[tuple[str, str], float] = {}
        self.handshake_to_up: list[float] = []

    def all_up(self, only: str | None = None) -> bool:
        names = {a.node.hostname for a in self.agents}
        done = True
        for agent, status in zip(self.agents, _statuses(self.agents), strict=True):
            if status is None:
                return False
            now = datetime.now(UTC)
            states = {p["label"]: p for p in status["peers"]}
            if set(states) != names - {agent.node.hostname}:
                done = False
            for label, peer in states.items():
                if only is not None and only not in (label, agent.node.hostname):
                    continue
                key = (agent.node.hostname, label)
                if peer["state"] != "up":
                    done = False
                elif key not in self.first_up:
                    self.first_up[key] = time.monotonic()
                    if peer["last_handshake"]:
                        shake = datetime.fromisoformat(peer["last_handshake"])
                        self.handshake_to_up.append((now - shake).total_seconds())
        return done


def _ping_all(agents: list[Agent], timeout: float = 30.0) -> tuple[int, int]:
    """Ping every other node's mesh address from each node until every pair answers;
    returns (pairs that failed the first try, pairs)."""
    ulas = {a.node.hostname: (a.status() or {})["self"]["address"] for a in agents}
    pending = [(a, b) for a in agents for b in agents if a is not b]
    total, first_failures = len(pending), None
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=16) as pool:
        while pending:
            results = list(pool.map(lambda p: p[0].node.ping(ulas[p[1].node.hostname]), pending))
            pending = [pair for pair, ok in zip(pending, results, strict=True) if not ok]
            first_failures = len(pending) if first_failures is None else first_failures
            if pending and time.monotonic() > deadline:
                names = [(a.node.hostname, b.node.hostname) for a, b in pending]
                raise RuntimeError(f"no ping answer after {timeout:g}s: {names}")
    return first_failures or 0, total


def _state_everywhere(agents: list[Agent], name: str, state: str) -> bool:
    for status in _statuses(agents):
        peers = {p["label"]: p["state"] for p in (status or {"peers": []})["peers"]}
        if peers.get(name) != state:
            return False
    return True


def _config(tmp: Path, name: str, url: str) -> Path:
    path = tmp / f"{name}.yaml"
    cluster, secret = new_cluster_id(os.urandom(32)), new_cluster_secret(os.urandom(32))
    path.write_text(mesh_config(cluster, secret, url, production=True))
    path.chmod(0o600)
    return path


def _failover(lab: Lab, tmp: Path, url: str, agents: list[Agent]) -> float:
    config = _config(tmp, "failover", url)
    pair = []
    for _ in range(2):
        index = len(lab.nodes) + 1
        dead = [f"10.98.0.{10 + index}/32", f"10.97.0.{10 + index}/32"]
        node = lab.add_node(first_addresses=dead)
        pair.append(Agent(node, config, tmp / node.hostname))
    agents.extend(pair)
    for agent in pair:
        agent.start()
    started = time.monotonic()
    watch = UpWatch(pair)
    wait_for("the failover pair", watch.all_up, timeout=TIMEOUT, interval=0.2)
    took = time.monotonic() - started
    for agent in pair:
        agent.stop()
    return took


def _run(nodes: int) -> dict[str, Any]:
    missing = missing_requirements()
    if missing:
        raise RuntimeError(f"the mesh benchmark needs {', '.join(missing)}")
    result: dict[str, Any] = {"nodes": nodes, "pairs": nodes * (nodes - 1) // 2}
    with tempfile.TemporaryDirectory(prefix="kubespan-bench-") as tmp_name, Lab() as lab:
        tmp = Path(tmp_name)
        service = HubService(lab, "memory://").start()
        started_agents: list[Agent] = []
        try:
            result["failover_two_dead_candidates_seconds"] = round(
                _failover(lab, tmp, service.url, started_agents), 2
            )
            config = _config(tmp, "mesh", service.url)
            agents = [Agent(node, config, tmp / node.hostname)
                      for node in (lab.add_node() for _ in range(nodes))]  # fmt: skip
            started_agents.extend(agents)
            for agent in agents:
                agent.start()
            last_start = time.monotonic()
            watch = UpWatch(agents)
            wait_for("the full mesh", watch.all_up, timeout=TIMEOUT, interval=0.1)
            result["join_up_seconds"] = round(time.monotonic() - last_start, 2)
            latencies = sorted(watch.handshake_to_up)
            result["handshake_to_up_seconds"] = {
                "median": round(statistics.median(latencies), 2),
                "max": round(latencies[-1], 2),
                "samples": len(latencies),
            }
            first_failures, total = _ping_all(agents)
            result["join_ping_seconds"] = round(time.monotonic() - last_start, 2)
            result["ping_pairs"], result["ping_first_try_failures"] = total, first_failures

            gone, others = agents[-1], agents[:-1]
            gone.node.exec(["ip", "link", "set", "eth0", "down"])
            cut = time.monotonic()
            name = gone.node.hostname
            wait_for("vanished node down", lambda: _state_everywhere(others, name, "down"),
                     timeout=TIMEOUT, interval=0.5)  # fmt: skip
            result["vanish_down_seconds"] = round(time.monotonic() - cut, 2)
            gone.node.exec(["ip", "link", "set", "eth0", "up"])
            back = time.monotonic()
            watch = UpWatch(agents)
            wait_for("back up", lambda: watch.all_up(only=name), timeout=TIMEOUT, interval=0.2)
            result["return_up_seconds"] = round(time.monotonic() - back, 2)

            started = time.monotonic()
            gone.cli("leave")
            wait_for(
                "everyone drops the leaver",
                lambda: all(name not in {p["label"] for p in (s or {"peers": []})["peers"]}
                            for s in _statuses(others)),
                timeout=TIMEOUT, interval=0.1,
            )  # fmt: skip
            result["leave_propagation_seconds"] = round(time.monotonic() - started, 2)
            if gone.proc is not None:
                gone.proc.wait(30)
            gone.start()
            started = time.monotonic()
            wait_for("the rejoin", UpWatch(agents).all_up, timeout=TIMEOUT, interval=0.2)
            result["rejoin_up_seconds"] = round(time.monotonic() - started, 2)
        finally:
            for agent in started_agents:
                agent.stop()
            service.close()
    result["timings"] = "production defaults"
    return result


async def run(nodes: int = 20) -> dict[str, Any]:
    """The report for a mesh of `nodes` (see the module doc); RuntimeError if not runnable."""
    return await asyncio.to_thread(_run, nodes)


def _table(result: dict[str, Any]) -> str:
    shake = result["handshake_to_up_seconds"]
    rows = [
        ("nodes / tunnels", f"{result['nodes']} / {result['pairs']}"),
        ("failover: 2 dead candidates", f"{result['failover_two_dead_candidates_seconds']:.2f} s"
                                        " until the pair is up"),
        ("join: every pair up", f"{result['join_up_seconds']:.2f} s after the last start"),
        ("join: handshake -> up", f"median {shake['median']:.2f} s, max {shake['max']:.2f} s"
                                  f" ({shake['samples']} peers)"),
        ("join: every pair pings", f"{result['join_ping_seconds']:.2f} s after the last start"
                                   f" ({result['ping_first_try_failures']} of"
                                   f" {result['ping_pairs']} needed a retry)"),
        ("vanish: down everywhere", f"{result['vanish_down_seconds']:.2f} s after the cut"),
        ("return: up everywhere", f"{result['return_up_seconds']:.2f} s after the link is back"),
        ("leave: dropped everywhere", f"{result['leave_propagation_seconds']:.2f} s"),
        ("rejoin: every pair up", f"{result['rejoin_up_seconds']:.2f} s after its start"),
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

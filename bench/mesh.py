"""Mesh timings with real agents and WireGuard in network namespaces, production defaults (root).

Every agent runs with no timing keys in its config (endpoint timeout 6 s, peer down 55 s,
reconcile 30 s, keepalive 25 s). Measured:
- failover: two nodes whose first two published endpoints are unroutable; from the first
  endpoint configured to `up`, from the agents' logs (both sides rotate through two dead
  candidates);
- join:     N agents; from the last start until every node reports every peer `up`, then a
            ping over the mesh for every ordered pair; and, per (node, peer), from
            WireGuard's handshake (whole seconds) to the agent's log line "peer …: up";
- vanish:   one node's link cut (`ip link set eth0 down` in its namespace): until every
            other node shows it `down`; then the link back: until every node shows it `up`;
- leave / rejoin: `kubespan leave` on one node until nobody lists it; restart until all up.

    python -m bench.mesh --nodes 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
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


def _all_up(agents: list[Agent], only: str | None = None) -> bool:
    """Every node lists every other and shows it `up` (only pairs with `only`, if given)."""
    names = {a.node.hostname for a in agents}
    for agent, status in zip(agents, _statuses(agents), strict=True):
        if status is None:
            return False
        states = {p["label"]: p["state"] for p in status["peers"]}
        if set(states) != names - {agent.node.hostname}:
            return False
        for label, state in states.items():
            if only in (None, label, agent.node.hostname) and state != "up":
                return False
    return True


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


_LOG_LINE = re.compile(
    r"^(\S+ \S+) INFO kubespan\.agent: peer (\S+): (up|trying endpoint \S+)$", re.MULTILINE
)


def _events(agent: Agent) -> dict[str, list[tuple[datetime, str]]]:
    """label -> [(local time, "up" | "trying endpoint …")] from the agent's log."""
    out: dict[str, list[tuple[datetime, str]]] = {}
    for stamp, label, what in _LOG_LINE.findall(agent.log()):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        out.setdefault(label, []).append((at, what))
    return out


def _connected_at(agent: Agent) -> datetime | None:
    match = re.search(r"^(\S+ \S+) INFO kubespan\.session: .*: connected$", agent.log(), re.M)
    return None if match is None else datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")


def _handshake_to_up(agents: list[Agent]) -> list[float]:
    """Per (node, peer): from WireGuard's handshake (whole seconds, so up to 1 s too early)
    to the agent's log line saying the peer is up."""
    gaps = []
    for agent in agents:
        status = agent.status() or {"peers": []}
        labels = {p["public_key"]: p["label"] for p in status["peers"]}
        events = _events(agent)
        out = agent.node.exec(["wg", "show", agent.node.interface, "latest-handshakes"])
        for line in out.splitlines():
            key, epoch = line.split("\t")
            ups = [at for at, what in events.get(labels.get(key, ""), []) if what == "up"]
            if ups and int(epoch):
                gaps.append((ups[0] - datetime.fromtimestamp(int(epoch))).total_seconds())
    return gaps


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
    wait_for("the failover pair", lambda: _all_up(pair), timeout=TIMEOUT, interval=0.2)
    # From the first endpoint configured to `up`, on each side (both rotate past two dead
    # candidates; whichever reaches the working one first brings up both, WireGuard roaming).
    took = []
    for agent in pair:
        for events in _events(agent).values():
            first = events[0][0]
            up = next(at for at, what in events if what == "up")
            took.append((up - first).total_seconds())
    for agent in pair:
        agent.stop()
    return max(took)


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
            wait_for("the full mesh", lambda: _all_up(agents), timeout=TIMEOUT, interval=0.1)
            result["join_up_seconds"] = round(time.monotonic() - last_start, 2)
            # The same end, counted from the moment the last agent reached the discovery
            # service: what is left once 20 Python processes have started on two cores.
            all_up = datetime.now()
            connected = [_connected_at(a) for a in agents]
            result["join_up_after_last_connected_seconds"] = round(
                (all_up - max(c for c in connected if c is not None)).total_seconds(), 2
            )
            latencies = sorted(_handshake_to_up(agents))
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
            wait_for("back up", lambda: _all_up(agents, name), timeout=TIMEOUT, interval=0.2)
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
            wait_for("the rejoin", lambda: _all_up(agents), timeout=TIMEOUT, interval=0.2)
            result["rejoin_up_seconds"] = round(time.monotonic() - started, 2)
            if result["rejoin_up_seconds"] > 10:
                print(f"slow rejoin; {name}'s log:\n{gone.log()[-4000:]}", file=sys.stderr)
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
                                        " from the first endpoint tried to up"),
        ("join: every pair up", f"{result['join_up_seconds']:.2f} s after the last start,"
                                f" {result['join_up_after_last_connected_seconds']:.2f} s after"
                                " the last agent connected"),
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

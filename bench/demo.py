"""`make demo` (root): a discovery service and three kubespan nodes in network namespaces.

Starts everything, waits for the full mesh, prints `kubespan status` of each node, the
members and the mesh matrix (`kubespan status --mesh`) seen by the first, then removes every
namespace, process and file it created. The agents run on the production defaults, except a
1-minute refresh of the records (instead of 15) so a demo left running shows changes sooner.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from membership.secrets import new_cluster_id, new_cluster_secret
from tests.support.netns import (
    Agent,
    HubService,
    Lab,
    mesh_config,
    missing_requirements,
    peer_states,
    wait_for,
)

NODES = 3


def main() -> int:
    missing = missing_requirements()
    if missing:
        print(f"demo: needs {', '.join(missing)} (run `make demo` as root)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="kubespan-demo-") as tmp_name, Lab() as lab:
        tmp = Path(tmp_name)
        print(f"namespaces ks-{lab.run_id}-*: hub with the discovery service, {NODES} nodes")
        service = HubService(lab, f"sqlite:///{tmp / 'events.db'}").start()
        config = tmp / "config.yaml"
        cluster = new_cluster_id(os.urandom(32))
        secret = new_cluster_secret(os.urandom(32))
        text = mesh_config(cluster, secret, service.url, production=True)
        config.write_text(text + "timing:\n  refresh: 1m\n")
        config.chmod(0o600)
        agents: list[Agent] = []
        try:
            for _ in range(NODES):
                node = lab.add_node()
                agents.append(Agent(node, config, tmp / node.hostname).start())
                print(f"  {node.hostname}: {node.ip} in {node.netns}, interface {node.interface}")
            started = time.monotonic()

            def meshed() -> bool:
                return all(
                    len(states := peer_states(a)) == NODES - 1
                    and all(s == "up" for s in states.values())
                    for a in agents
                )

            wait_for("the mesh", meshed, timeout=60)
            print(f"\nfull mesh up after {time.monotonic() - started:.1f}s\n")
            for agent in agents:
                print(
                    f"$ ip netns exec {agent.node.netns} kubespan status   # {agent.node.hostname}"
                )
                print(agent.cli("status"))
            print(f"$ ip netns exec {agents[0].node.netns} kubespan members")
            print(agents[0].cli("members"))

            def matrix() -> bool:
                text = agents[0].cli("status", "--mesh").rstrip()
                return text.endswith(f"{NODES} nodes, 0 pairs not up, 0 one-way")

            wait_for("every view published", matrix, timeout=30)
            print(f"$ ip netns exec {agents[0].node.netns} kubespan status --mesh")
            print(agents[0].cli("status", "--mesh"))
            first, last = agents[0], agents[-1]
            address = (last.status() or {})["self"]["address"]
            ok = first.node.ping(address)
            verdict = "ok" if ok else "FAILED"
            print(f"\nping {first.node.hostname} -> {last.node.hostname} ({address}): {verdict}")
            return 0 if ok else 1
        except AssertionError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            for agent in agents:
                print(f"--- {agent.node.hostname}\n{agent.log()[-2000:]}", file=sys.stderr)
            return 1
        finally:
            for agent in agents:
                agent.stop()
            service.close()
            print("cleaned up")


if __name__ == "__main__":
    raise SystemExit(main())

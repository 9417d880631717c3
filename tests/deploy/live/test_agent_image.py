"""The agent image, run for real: a container agent meshes with an agent on another node.

    hub namespace   : the service image, a container joined to the hub's network namespace
    node 1 namespace: the agent image, joined to the node's namespace (as hostNetwork would),
                      NET_ADMIN only, /dev/net/tun, state on a named volume
    node 2 namespace: `kubespan run` straight from this checkout (tests/support/netns.py)

Both agents must report each other `up`, `kubespan status` through `podman exec` included,
and the host agent must reach the container agent's mesh address through the tunnel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from membership.secrets import new_cluster_id, new_cluster_secret
from tests.deploy.live.podman import inspect, logs, podman, remove_containers, remove_volumes
from tests.support.netns import HUB_IP, SERVICE_PORT, Agent, Lab, mesh_config, peer_states, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.privileged]

CONVERGE = 90.0
NETNS_DIR = Path("/var/run/netns")


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def _container_status(name: str) -> str:
    return podman("exec", name, "kubespan", "status", check=False, timeout=30)


def _peer_up(status_text: str, label: str) -> bool:
    return any(
        line.split()[:1] == [label] and " up " in f" {line} " for line in status_text.splitlines()
    )


def test_agent_container_meshes_with_an_agent_on_another_node(
    lab: Lab, agent_image: str, service_image: str, tmp_path: Path
) -> None:
    run = lab.run_id
    service, agent = f"ks-svc-{run}", f"ks-agent-{run}"
    volume, service_volume = f"ks-agent-state-{run}", f"ks-svc-data-{run}"
    container_node, host_node = lab.add_node(), lab.add_node()
    config = tmp_path / "config.yaml"
    endpoint = f"http://{HUB_IP}:{SERVICE_PORT}"
    config.write_text(
        mesh_config(new_cluster_id(os.urandom(32)), new_cluster_secret(os.urandom(32)), endpoint)
    )
    config.chmod(0o600)
    host_agent: Agent | None = None
    try:
        podman(
            "run", "-d", "--name", service, "--network", f"ns:{NETNS_DIR / lab.hub}",
            "-e", f"DISCOVERY_HTTP_ADDR={HUB_IP}:{SERVICE_PORT}",
            "-e", "DISCOVERY_GRPC_ADDR=", "-e", "DISCOVERY_METRICS_ADDR=",
            "-v", f"{service_volume}:/var/lib/discovery", service_image,
        )  # fmt: skip
        podman(
            "run", "-d", "--name", agent, "--hostname", container_node.hostname,
            "--network", f"ns:{NETNS_DIR / container_node.netns}",
            "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun",
            "-v", f"{volume}:/var/lib/kubespan",
            "-v", f"{config}:/etc/kubespan/config.yaml:ro",
            agent_image,
        )  # fmt: skip
        host_agent = Agent(host_node, config, tmp_path / "host-agent").start()

        def converged() -> bool:
            assert inspect(agent)["State"]["Running"], logs(agent)
            mine = _peer_up(_container_status(agent), host_node.hostname)
            theirs = peer_states(host_agent) == {container_node.hostname: "up"}
            return mine and theirs

        try:
            wait_for("both agents report the other up", converged, timeout=CONVERGE, interval=1)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- container agent\n{logs(agent)}\n--- host agent\n"
                f"{host_agent.log()[-3000:]}\n--- service\n{logs(service)}"
            ) from None

        status = _container_status(agent)
        match = re.search(r"^node \S+ \(\S+\) (\S+) key", status, re.MULTILINE)
        assert match, status
        address = match.group(1).split("/")[0]
        try:
            # Generous: CI once needed more than 20 s here on a loaded machine.
            wait_for(
                f"{host_node.hostname} pings the container agent at {address} through the mesh",
                lambda: host_node.ping(address),
                timeout=45,
            )
        except AssertionError as exc:
            routes = host_node.exec(["ip", "-6", "route"], check=False)
            wg = host_node.exec(["wg", "show", "all"], check=False)
            raise AssertionError(
                f"{exc}\n--- {host_node.hostname} routes\n{routes}\n--- wg\n{wg}\n"
                f"--- container agent status\n{_container_status(agent)}\n"
                f"--- host agent\n{host_agent.log()[-3000:]}"
            ) from None
    finally:
        if host_agent is not None:
            host_agent.stop()
        remove_containers([agent, service])
        remove_volumes([volume, service_volume])

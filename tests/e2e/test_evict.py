"""Cutting a node out of a locked cluster, with real agents and WireGuard in namespaces: after
`kubespan evict`, every other node drops its tunnel, the evicted node cannot write itself back,
and a replacement machine (a fresh state dir, the same config file) joins the mesh."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from kubespan.signing import locked_cluster_id
from membership.secrets import decode_cluster_secret, new_cluster_secret
from tests.support.netns import (
    Agent,
    HubService,
    Lab,
    mesh_config,
    missing_requirements,
    peer_states,
    wait_for,
)

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

CONVERGE = 60.0
DROPPED = 10.0


@pytest.fixture
def lab() -> Iterator[Lab]:
    missing = missing_requirements()
    if missing:
        message = f"needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"privileged mesh tests cannot run in CI: {message}")
        pytest.skip(message)
    with Lab() as lab:
        yield lab


def _all_up(agent: Agent, count: int) -> bool:
    states = peer_states(agent)
    return len(states) == count and all(s == "up" for s in states.values())


def _key_of(agent: Agent, label: str) -> str:
    status = agent.status()
    assert status is not None
    [key] = [p["public_key"] for p in status["peers"] if p["label"] == label]
    return str(key)


def _dropped(agent: Agent, label: str) -> bool:
    states = peer_states(agent)
    return bool(states) and label not in states


def test_an_evicted_node_is_cut_out_and_a_replacement_joins(lab: Lab, tmp_path: Path) -> None:
    service = HubService(lab, f"sqlite:///{tmp_path / 'events.db'}").start()
    secret = new_cluster_secret(os.urandom(32))
    cluster_id = locked_cluster_id(decode_cluster_secret(secret))
    config = tmp_path / "config.yaml"
    config.write_text(mesh_config(cluster_id, secret, service.url))
    config.chmod(0o600)
    agents: list[Agent] = []
    try:
        for _ in range(3):
            node = lab.add_node()
            agents.append(Agent(node, config, tmp_path / node.hostname).start())
        for agent in agents:
            wait_for(f"{agent.node.hostname} sees 2 peers up", partial(_all_up, agent, 2),
                     timeout=CONVERGE)  # fmt: skip
        first, second, evicted = agents
        label = evicted.node.hostname
        assert label in peer_states(first)
        old_key = _key_of(first, label)

        out = first.node.exec(
            [sys.executable, "-m", "kubespan", "evict", label, "--config", str(config)]
        )
        assert "evict" in out.lower() or label in out
        for agent in (first, second):
            wait_for(
                f"{agent.node.hostname} drops {label}",
                partial(_dropped, agent, label),
                timeout=DROPPED,
            )
        # The evicted agent keeps running and refreshing: it never gets back in.
        members = first.node.exec(
            [sys.executable, "-m", "kubespan", "members", "--config", str(config),
             "--state-dir", str(first.state_dir)],
        )  # fmt: skip
        assert "revoked" in members.lower()
        evicted.stop()

        # A replacement machine: the same namespace and config, a fresh identity.
        replacement = Agent(evicted.node, config, tmp_path / "replacement").start()
        agents.append(replacement)
        for agent in (first, second):
            wait_for(
                f"{agent.node.hostname} meshes with the replacement",
                partial(_all_up, agent, 2),
                timeout=CONVERGE,
            )
        # It is the new machine (its own key) that came up, not the evicted one back.
        assert _key_of(first, label) != old_key
    finally:
        for agent in agents:
            agent.stop()
        service.close()

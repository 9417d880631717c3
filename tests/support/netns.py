"""A throwaway network of namespaces for end-to-end mesh tests and benchmarks (needs root).

    hub namespace  ks-<run>-br : bridge br0 10.99.0.1/24, the discovery service
    node namespace ks-<run>-nI : eth0 10.99.0.(10+I)/24, veth to br0, one kubespan agent

Everything lives in namespaces named after a random run id, so the host's own network is
untouched and parallel runs cannot clash; WireGuard interfaces get run-unique names too,
because wireguard-go's control sockets share /var/run/wireguard across namespaces.
Deleting a namespace does not stop the processes inside it (wireguard-go keeps it alive by
holding its sockets), so teardown kills every pid of a namespace before deleting it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.shell import sh, terminate, wait_for

__all__ = ["sh", "terminate", "wait_for"]  # re-exported: the mesh tests take them from here

HUB_IP = "10.99.0.1"
SERVICE_PORT = 3001
REQUIRED_TOOLS = ("ip", "wg", "wireguard-go", "nft", "ping", "unshare")
WG_SOCKETS = Path("/var/run/wireguard")


def missing_requirements() -> list[str]:
    """What stops privileged mesh tests here: not root, or tools missing ([] when none)."""
    missing = [] if os.geteuid() == 0 else ["root"]
    return missing + [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


@dataclass
class Node:
    """One machine: a namespace with one uplink."""

    lab: Lab
    index: int
    netns: str
    ip: str
    interface: str
    """The WireGuard link name its agent should use (unique on this host)."""

    @property
    def hostname(self) -> str:
        return f"n{self.index}"

    def exec(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
        return sh(["ip", "netns", "exec", self.netns, *argv], check=check, timeout=timeout)

    def ping(self, address: str, *, count: int = 1, wait: float = 2.0, size: int = 56) -> bool:
        flag = ["-6"] if ":" in address else ["-4"]
        argv = ["ping", *flag, "-n", "-q", "-c", str(count), "-W", f"{wait:g}",
                "-i", "0.2", "-s", str(size), address]  # fmt: skip
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            timeout=wait * count + 5,
        )
        return proc.returncode == 0

    def block(self, ip: str) -> None:
        """Drop every packet between this node and `ip` (both ways), as a broken path would."""
        ruleset = (
            "table inet ksblock {\n"
            f"  chain input {{ type filter hook input priority -300; ip saddr {ip} drop; }}\n"
            f"  chain output {{ type filter hook output priority -300; ip daddr {ip} drop; }}\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "-f", "-"],
            input=ruleset.encode(),
            check=True,
            capture_output=True,
        )

    def unblock(self) -> None:
        self.exec(["nft", "delete", "table", "inet", "ksblock"])

    def kill_all(self) -> None:
        """SIGKILL every process in the namespace, as a power cut would (wireguard-go too)."""
        self.lab.kill_pids(self.netns)


@dataclass
class Lab:
    """Hub + nodes; use as a context manager, or call destroy() (idempotent)."""

    run_id: str = field(default_factory=lambda: os.urandom(2).hex())
    nodes: list[Node] = field(default_factory=list)
    hub: str = ""
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hub = f"ks-{self.run_id}-br"

    def __enter__(self) -> Lab:
        return self.create()

    def __exit__(self, *_: object) -> None:
        self.destroy()

    def create(self) -> Lab:
        try:
            self._add_netns(self.hub)
            hub = ["ip", "netns", "exec", self.hub]
            sh([*hub, "ip", "link", "add", "br0", "type", "bridge"])
            sh([*hub, "ip", "addr", "add", f"{HUB_IP}/24", "dev", "br0"])
            sh([*hub, "ip", "link", "set", "br0", "up"])
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_netns(self, name: str) -> None:
        sh(["ip", "netns", "add", name])
        self.created.append(name)
        sh(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])

    def add_node(self, first_addresses: Sequence[str] = ()) -> Node:
        """A new node; `first_addresses` (CIDRs) go on eth0 before its 10.99.0.x address,
        so they come first in kernel order and are published (and tried) first."""
        index = len(self.nodes) + 1
        node = Node(
            self,
            index,
            netns=f"ks-{self.run_id}-n{index}",
            ip=f"10.99.0.{10 + index}",
            interface=f"ks{self.run_id}n{index}",
        )
        self._add_netns(node.netns)
        veth = f"ks{self.run_id}v{index}"
        sh(["ip", "link", "add", veth, "netns", self.hub, "type", "veth",
            "peer", "name", "eth0", "netns", node.netns])  # fmt: skip
        sh(["ip", "netns", "exec", self.hub, "ip", "link", "set", veth, "master", "br0", "up"])
        for cidr in first_addresses:
            node.exec(["ip", "addr", "add", cidr, "dev", "eth0"])
        node.exec(["ip", "addr", "add", f"{node.ip}/24", "dev", "eth0"])
        node.exec(["ip", "link", "set", "eth0", "up"])
        self.nodes.append(node)
        return node

    def kill_pids(self, netns: str) -> None:
        for _ in range(50):
            pids = [int(p) for p in sh(["ip", "netns", "pids", netns], check=False).split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def destroy(self) -> None:
        for name in reversed(self.created):
            self.kill_pids(name)
            sh(["ip", "netns", "del", name], check=False)
        self.created.clear()
        for node in self.nodes:
            (WG_SOCKETS / f"{node.interface}.sock").unlink(missing_ok=True)


@dataclass
class HubService:
    """`python -m discovery` inside the hub namespace, reachable from every node."""

    lab: Lab
    storage: str
    port: int = SERVICE_PORT
    proc: subprocess.Popen[bytes] | None = None
    log: Any = field(
        default_factory=lambda: tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives with us
            prefix="discovery-", suffix=".log"
        )
    )

    @property
    def url(self) -> str:
        return f"http://{HUB_IP}:{self.port}"

    def start(self, timeout: float = 30.0) -> HubService:
        argv = [
            "ip", "netns", "exec", self.lab.hub,
            sys.executable, "-m", "discovery",
            "--storage", self.storage,
            "--http-addr", f"{HUB_IP}:{self.port}",
            "--grpc-addr", "",
            "--metrics-addr", "",
            "--log-format", "text",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log)
        probe = (
            "import sys, urllib.request\n"
            f"sys.exit(urllib.request.urlopen('{self.url}/readyz', timeout=1).status != 200)"
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"discovery exited early: {self.output()[-2000:]}")
            check = ["ip", "netns", "exec", self.lab.hub, sys.executable, "-c", probe]
            return subprocess.run(check, capture_output=True, timeout=10).returncode == 0

        wait_for("the discovery service", ready, timeout=timeout, interval=0.1)
        return self

    def stop(self) -> None:
        terminate(self.proc)

    def close(self) -> None:
        """Stop and drop the log file."""
        self.stop()
        self.log.close()

    def output(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")


def mesh_config(
    cluster_id: str,
    secret: str,
    endpoint: str,
    *,
    reconcile: str = "1s",
    endpoint_timeout: str = "3s",
    peer_down: str = "10s",
    refresh: str = "5s",
    ttl: str = "2m",
    keepalive: int = 2,
    endpoint_filters: Sequence[str] = (),
    production: bool = False,
) -> str:
    """A config with short timings; keepalive well under peer_down keeps live peers `up`.

    `production=True`: no mesh or timing keys at all, so every default applies."""
    filters = "".join(f"\n    - '{f}'" for f in endpoint_filters)
    head = (
        f"cluster:\n  id: '{cluster_id}'\n  secret: '{secret}'\n"
        f"discovery:\n  endpoints:\n    - '{endpoint}'\n"
    )
    if production:
        return head
    return (
        head
        + f"mesh:\n  keepalive_seconds: {keepalive}\n"
        + (f"  endpoint_filters:{filters}\n" if filters else "")
        + f"timing:\n  reconcile: {reconcile}\n  endpoint_timeout: {endpoint_timeout}\n"
        f"  peer_down: {peer_down}\n  refresh: {refresh}\n  ttl: {ttl}\n"
    )


@dataclass
class Agent:
    """`python -m kubespan run` in a node's namespace, with its own hostname (UTS ns)."""

    node: Node
    config: Path
    state_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> Agent:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_path = self.state_dir.parent / f"{self.node.hostname}.log"
        run = [
            sys.executable, "-m", "kubespan", "run",
            "--config", str(self.config),
            "--state-dir", str(self.state_dir),
            "--interface", self.node.interface,
        ]  # fmt: skip
        # Nodes of a real cluster have different hostnames (the default nodename); a private
        # UTS namespace gives each agent its own without touching the shared config file.
        script = f'hostname {self.node.hostname} && exec "$@"'
        argv = ["ip", "netns", "exec", self.node.netns,
                "unshare", "--uts", "sh", "-c", script, "sh", *run]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[2]
            )
        return self

    @property
    def socket(self) -> Path:
        return self.state_dir / "kubespan.sock"

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        argv = [sys.executable, "-m", "kubespan", *args, "--state-dir", str(self.state_dir)]
        return self.node.exec(argv, check=check, timeout=timeout)

    def status(self) -> dict[str, Any] | None:
        """The agent's status, straight from its socket; None while it does not answer."""
        from kubespan.status_api import StatusError, request

        try:
            result: dict[str, Any] = request(self.socket, "GET", "/v1/status", timeout=5)
        except StatusError:
            return None
        return result

    def stop(self) -> None:
        terminate(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def peer_states(agent: Agent) -> dict[str, str]:
    """label -> state as the agent reports it ({} while it does not answer)."""
    status = agent.status()
    return {p["label"]: p["state"] for p in status["peers"]} if status else {}


def dump_json(value: object) -> str:
    return json.dumps(value, indent=2, default=str)

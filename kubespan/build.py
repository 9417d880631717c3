"""Building an Agent from its config: the real device and runner, or what a test gives."""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv6Address
from pathlib import Path

from discovery.client import connect
from kubespan.agent import SOCKET_NAME, Agent, Clock, utcnow
from kubespan.config import Config
from kubespan.device import Device, MeshDevice
from kubespan.poke import udp_poke
from kubespan.session import Backoff, ClientFactory
from kubespan.wg import Runner, SubprocessRunner


def build_agent(
    config: Config,
    state_dir: Path,
    interface: str,
    *,
    runner: Runner | None = None,
    device: MeshDevice | None = None,
    clients: ClientFactory = connect,
    clock: Clock = utcnow,
    backoff: Callable[[], Backoff] = Backoff,
    hostname: str | None = None,
    socket_path: Path | bool | None = True,
    poke: Callable[[IPv6Address], None] = udp_poke,
) -> Agent:
    """The composition root: wire config, device, discovery clients and clock into an Agent.

    Without `device`, the real Device on `interface` runs `ip`/`wg`/`nft` through `runner`
    (default: subprocesses). `socket_path=True` serves the status API at
    `<state_dir>/kubespan.sock`; None or False serves none (tests that only drive the loop).
    """
    if device is None:
        runner = runner or SubprocessRunner()
        device = Device(interface, runner, state_dir=state_dir, mtu=config.mesh.mtu)
    path = state_dir / SOCKET_NAME if socket_path is True else socket_path or None
    return Agent(
        config,
        state_dir,
        device,
        clients=clients,
        clock=clock,
        backoff=backoff,
        hostname=hostname or socket.gethostname(),
        socket_path=path if isinstance(path, Path) else None,
        poke=poke,
    )

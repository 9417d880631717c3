"""`kubespan`: the node agent (`run`) and its CLI (`status`, `members`, `leave`, `evict`,
`gen-secrets`).

Operator mistakes end in one line on stderr and a non-zero exit, never a traceback:
exit 2 for a bad config or bad arguments, 1 for anything the system refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from discovery.logs import JSONFormatter
from kubespan import config_defaults as defaults
from kubespan import evict, signing
from kubespan.addressing import AddressingError
from kubespan.agent import SOCKET_NAME, Agent
from kubespan.build import build_agent
from kubespan.clients import CAFileError, client_factory
from kubespan.config import Config, ConfigError, gen_config, load_config
from kubespan.config_values import format_duration
from kubespan.identity import IdentityError
from kubespan.mesh_health import format_mesh
from kubespan.status import format_members, format_status
from kubespan.status_api import AgentUnavailable, StatusError, request
from kubespan.wg import SubprocessRunner, WgError
from membership import keys
from membership.secrets import decode_cluster_secret, new_cluster_id, new_cluster_secret

DEFAULT_STATE_DIR = Path("/var/lib/kubespan")
DEFAULT_INTERFACE = "kubespan"
DEFAULT_CONFIG = Path("/etc/kubespan/config.yaml")

log = logging.getLogger("kubespan")

_RUN_EPILOG = (
    "config defaults (docs/configuration.md): "
    f"mesh.port {defaults.DEFAULT_PORT}, mesh.mtu {defaults.DEFAULT_MTU}, "
    f"mesh.keepalive_seconds {defaults.DEFAULT_KEEPALIVE_SECONDS}, "
    f"mesh.force_routing {str(defaults.DEFAULT_FORCE_ROUTING).lower()}, "
    f"node.machine_type {defaults.DEFAULT_MACHINE_TYPE}, "
    f"timing.endpoint_timeout {format_duration(defaults.DEFAULT_ENDPOINT_TIMEOUT)}, "
    f"timing.peer_down {format_duration(defaults.DEFAULT_PEER_DOWN)}, "
    f"timing.reconcile {format_duration(defaults.DEFAULT_RECONCILE)}, "
    f"timing.ttl {format_duration(defaults.DEFAULT_TTL)}, timing.refresh half of timing.ttl"
)


class _Exit(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _load(path: Path) -> Config:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _Exit(f"config {path}: cannot read: {reason}", 2) from None
    try:
        return load_config(text)
    except ConfigError as exc:
        message = str(exc).removeprefix("config: ")
        raise _Exit(f"config {path}: {message}", 2) from None


def _configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: one line per refresh and watch is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def _serve(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()


def _warn_if_readable(path: Path) -> None:
    # The file holds the cluster secret, which decrypts every record and is the WireGuard
    # preshared key: a copy readable by other users defeats both.
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "config %s is readable by other users (mode %04o); it holds the cluster secret:"
            " chmod 600 %s",
            path,
            mode,
            path,
        )


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _configure_logging(args.log_format, args.log_level)
    _warn_if_readable(args.config)
    try:
        clients = client_factory(config.discovery.ca_file)
    except CAFileError as exc:
        raise _Exit(f"config {args.config}: {exc}", 2) from None
    agent = build_agent(
        config, args.state_dir, args.interface, runner=SubprocessRunner(), clients=clients
    )
    try:
        asyncio.run(_serve(agent))
    except (IdentityError, WgError, AddressingError, StatusError) as exc:
        raise _Exit(str(exc), 1) from None
    return 0


def _socket(args: argparse.Namespace) -> Path:
    path: Path = args.socket or args.state_dir / SOCKET_NAME
    return path


def _query(args: argparse.Namespace, path: str) -> Any:
    try:
        return request(_socket(args), "GET", path)
    except AgentUnavailable as exc:
        raise _Exit(f"no agent running ({exc})", 1) from None
    except StatusError as exc:
        raise _Exit(str(exc), 1) from None


def _cmd_status(args: argparse.Namespace) -> int:
    if args.mesh:
        mesh = _query(args, "/v1/mesh")
        print(json.dumps(mesh, indent=2) if args.json else format_mesh(mesh))
        return 0
    status = _query(args, "/v1/status")
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def _cmd_members(args: argparse.Namespace) -> int:
    members = _query(args, "/v1/members")
    print(json.dumps(members, indent=2) if args.json else format_members(members))
    if not args.json and args.config.exists():
        try:
            config = _load(args.config)
        except _Exit as exc:
            # The members were shown; the revoked list is extra and must not fail the command.
            print(f"kubespan: members: revoked nodes not shown: {exc}", file=sys.stderr)
            return 0
        if keys.cluster_key_of(config.cluster.id) is not None:
            gone = asyncio.run(evict.revoked(config))
            print("\nrevoked (cut out for good):" if gone else "\nrevoked: none")
            for node_id in gone:
                print(f"  {node_id}")
    return 0


def _cmd_evict(args: argparse.Namespace) -> int:
    config = _load(args.config)
    try:
        node_id = asyncio.run(evict.find_node(config, args.node))
        results = asyncio.run(evict.evict(config, node_id))
    except ValueError as exc:
        raise _Exit(f"evict: {exc}", 2) from None
    for url, error in results.items():
        if error is None:
            print(f"evicted node {node_id} from {url}")
        else:
            print(f"kubespan: evict: {url}: {error}", file=sys.stderr)
    return 0 if any(e is None for e in results.values()) else 1


def _cmd_leave(args: argparse.Namespace) -> int:
    try:
        result = request(_socket(args), "POST", "/v1/leave", timeout=60.0)
    except AgentUnavailable:
        # No agent: do the same from the config and the state dir, so a node whose agent is
        # gone can still be removed cleanly.
        config = _load(args.config)
        _configure_logging("text", "warning")
        try:
            clients = client_factory(config.discovery.ca_file)
        except CAFileError as exc:
            raise _Exit(f"config {args.config}: {exc}", 2) from None
        agent = build_agent(
            config,
            args.state_dir,
            args.interface,
            runner=SubprocessRunner(),
            clients=clients,
            socket_path=None,
        )
        try:
            result = asyncio.run(agent.leave())
        except (IdentityError, WgError, StatusError) as exc:
            raise _Exit(str(exc), 1) from None
    except StatusError as exc:
        raise _Exit(str(exc), 1) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for url in result.get("deleted", []):
            print(f"deleted node {result.get('node_id')} from {url}")
        for where, error in result.get("errors", {}).items():
            print(f"kubespan: leave: {where}: {error}", file=sys.stderr)
    return 1 if result.get("errors") else 0


def _cmd_gen_secrets(args: argparse.Namespace) -> int:
    secret = new_cluster_secret(os.urandom(32))
    # Locked by default: the id names the key the secret derives, so only members can write.
    cluster_id = (
        new_cluster_id(os.urandom(32))
        if args.open
        else signing.locked_cluster_id(decode_cluster_secret(secret))
    )
    try:
        text = gen_config(cluster_id, secret, args.endpoint)
    except ConfigError as exc:
        raise _Exit(f"gen-secrets: {exc}", 2) from None
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        # Created 0600 from the start (and made so if it existed): never readable by others,
        # not even for a moment.
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
    except OSError as exc:
        raise _Exit(f"gen-secrets: {args.output}: {exc.strerror or exc}", 1) from None
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubespan", description="WireGuard full mesh from a discovery service."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def state(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)

    def client(p: argparse.ArgumentParser) -> None:
        state(p)
        p.add_argument(
            "--socket", type=Path, help="status socket (default <state-dir>/kubespan.sock)"
        )
        p.add_argument("--json", action="store_true", help="print JSON")

    run = sub.add_parser(
        "run",
        help="run the agent",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=_RUN_EPILOG,
    )
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the YAML config")
    run.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="identity, keys, socket"
    )
    run.add_argument("--interface", default=DEFAULT_INTERFACE, help="the WireGuard link")
    run.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines")
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="least severity logged",
    )
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser("status", help="peers of the running agent")
    client(status)
    status.add_argument(
        "--mesh",
        action="store_true",
        help="every node's view of its peers: who reaches whom, one-way failures marked",
    )
    status.set_defaults(func=_cmd_status)

    members = sub.add_parser(
        "members", help="cluster members seen by the running agent, and revoked nodes"
    )
    client(members)
    members.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    members.set_defaults(func=_cmd_members)

    cut = sub.add_parser("evict", help="cut a node out of a locked cluster for good")
    cut.add_argument("node", help="node id, nodename or hostname")
    cut.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    cut.set_defaults(func=_cmd_evict)

    leave = sub.add_parser("leave", help="leave the cluster and remove the mesh link")
    client(leave)
    leave.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    leave.add_argument("--interface", default=DEFAULT_INTERFACE)
    leave.set_defaults(func=_cmd_leave)

    gen = sub.add_parser(
        "gen-secrets", help="print a new config with a fresh cluster id and secret"
    )
    gen.add_argument("--endpoint", required=True, help="discovery URL, e.g. http://host:3001")
    gen.add_argument(
        "--open",
        action="store_true",
        help="a Talos-compatible random cluster id: unsigned writers allowed, no evict",
    )
    gen.add_argument(
        "--output", type=Path, help="write the config to this file (mode 0600), not stdout"
    )
    gen.set_defaults(func=_cmd_gen_secrets)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = args.func(args)
    except _Exit as exc:
        print(f"kubespan: {exc}", file=sys.stderr)
        code = exc.code
    raise SystemExit(code)


if __name__ == "__main__":
    main()

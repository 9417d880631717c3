"""The node agent: composition root and the reconcile loop.

    sessions (one per discovery endpoint) --maps--> merge --> peer specs
    `wg show dump` --> peer states (peer_state.py) --> rotate endpoints --> plan --> apply
                                                                     \\--> nft routed set

Level-triggered like Talos: every pass recomputes the desired device from the current
affiliate maps and diffs it against what WireGuard reports, so a missed event or a failed
`wg set` is repaired by the next pass (every `timing.reconcile`, or at once on a change).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from ipaddress import IPv6Address
from pathlib import Path

from discovery.client import connect
from kubespan.addressing import eui64_address, first_mac, parse_ip_link_json, ula_prefix
from kubespan.config import Config
from kubespan.device import Device, node_addresses, parse_ip_addr_json
from kubespan.identity import Identity, load_or_create_identity
from kubespan.nft import FWMARK_WG
from kubespan.peer_state import ConnectionState, Durations, PeerStatus, advance
from kubespan.peers import PeerSpec, local_endpoints, peer_specs
from kubespan.plan import MeshSpec, RemovePeer, WgPeer, plan
from kubespan.session import Backoff, ClientFactory, Publication, Session, wait_event
from kubespan.status import StatusServer
from kubespan.wg import Runner, WgError
from kubespan.wgdump import DeviceState, PeerState, WgDumpError
from membership.members import members, merge_affiliates
from membership.record import (
    AffiliateRecord,
    DecodedAffiliate,
    EndpointAddr,
    IPNetwork,
    KubeSpanInfo,
)
from membership.sealing import ClusterKey, seal_endpoint_addr, seal_record

log = logging.getLogger(__name__)

SOCKET_NAME = "kubespan.sock"
_COALESCE = 0.05
"""Seconds to wait after a change before reconciling, so a burst of watch events (a
snapshot, many nodes joining at once) costs one pass instead of one per event."""

try:
    VERSION = version("kubespan-discovery")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Local:
    record: AffiliateRecord
    endpoints: tuple[EndpointAddr, ...]


@dataclass(slots=True)
class _Seen:
    """Receive counter of a peer and when it last grew."""

    rx: int
    at: datetime | None


class Agent:
    """One node's mesh agent. Build it with build_agent(); `run()` until stop() or leave()."""

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        interface: str,
        *,
        runner: Runner,
        clients: ClientFactory,
        clock: Clock,
        backoff: Callable[[], Backoff],
        hostname: str,
        socket_path: Path | None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.interface = interface
        self._runner = runner
        self._clock = clock
        self._hostname = hostname
        self._socket_path = socket_path
        self.key = ClusterKey(config.cluster.secret)
        self.mesh_prefix = ula_prefix(config.cluster.id)
        self.device = Device(interface, runner, state_dir=state_dir, mtu=config.mesh.mtu)
        self._durations = Durations(config.timing.endpoint_timeout, config.timing.peer_down)
        self._clients = clients
        self._backoff = backoff
        self.identity: Identity | None = None
        self.address: IPv6Address | None = None
        self.sessions: list[Session] = []
        self._local: _Local | None = None
        self._publication: Publication | None = None
        self._device_ready = False
        self._dump: DeviceState | None = None
        self._specs: list[PeerSpec] = []
        self._statuses: dict[str, PeerStatus] = {}
        self._shown: dict[str, ConnectionState] = {}
        self._seen: dict[str, _Seen] = {}
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: StatusServer | None = None
        self._host_json: str | None = None
        self.passes = 0
        self.last_error: str | None = None
        self.left = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Identity, mesh address, our record, the link; raises IdentityError/WgError/..."""
        self.identity = identity = load_or_create_identity(self.state_dir)
        host = await self._runner.run(["ip", "-j", "-d", "addr", "show"])
        # Talos derives the address once, when the identity is established: a later MAC
        # change must not move a running node's mesh address under its peers.
        mac = first_mac(parse_ip_link_json(host.decode()))
        self.address = eui64_address(self.mesh_prefix, mac)
        log.info(
            "node %s, public key %s, mesh address %s",
            identity.node_id,
            identity.public_key,
            self.address,
        )
        self.sessions = [self._session(ep.url) for ep in self.config.discovery.endpoints]
        self._update_local(host.decode())
        await self._bring_up()

    async def run(self) -> None:
        """start(), then serve until stop() or leave(); keeps the link on a plain stop."""
        if self._socket_path is not None:
            # The state dir must exist (the identity creates it, 0700) before the socket,
            # and the socket comes before the link: a second agent started on the same state
            # dir by mistake must fail here, before it touches the interface.
            self.identity = load_or_create_identity(self.state_dir)
            self._server = StatusServer(self._socket_path, self)
            await self._server.start()
        try:
            await self.start()
            self._tasks = [asyncio.create_task(s.run()) for s in self.sessions]
            self._tasks.append(asyncio.create_task(self._reconcile_loop()))
            self._tasks.append(asyncio.create_task(self._host_loop()))
            await self._stopping.wait()
        finally:
            await self._cancel_tasks()
            if self._server is not None:
                await self._server.close()
            log.info("stopped%s", " (left the cluster)" if self.left else "")

    def stop(self) -> None:
        """Ask run() to return; the link and peers stay so that a restart is seamless."""
        self._stopping.set()

    async def leave(self) -> dict[str, object]:
        """Delete our record from every service and remove link, rules and nft; then stop."""
        await self._cancel_tasks()
        if self.identity is None:
            self.identity = load_or_create_identity(self.state_dir)
        if not self.sessions:
            self.sessions = [self._session(ep.url) for ep in self.config.discovery.endpoints]
        results = await asyncio.gather(*(s.delete_self() for s in self.sessions))
        errors = {s.url: err for s, err in zip(self.sessions, results, strict=True) if err}
        device_errors = await self.device.teardown()
        self._device_ready = False
        self.left = True
        for url, err in errors.items():
            log.warning("leave: %s: %s", url, err)
        log.info(
            "left the cluster: record deleted from %d of %d services",
            len(results) - len(errors),
            len(results),
        )
        self._stopping.set()
        return {
            "node_id": self.identity.node_id,
            "deleted": [s.url for s in self.sessions if s.url not in errors],
            "errors": {**errors, **({"device": "; ".join(device_errors)} if device_errors else {})},
        }

    async def _cancel_tasks(self) -> None:
        # The reconcile loop must be gone before a teardown, or it would rebuild the link.
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []

    def _session(self, url: str) -> Session:
        assert self.identity is not None
        return Session(
            url,
            cluster_id=self.config.cluster.id,
            node_id=self.identity.node_id,
            key=self.key,
            ttl=self.config.timing.ttl,
            refresh=self.config.timing.refresh,
            clients=self._clients,
            publication=self._current_publication,
            on_change=self._changed.set,
            on_public_ip=self._public_ip_changed,
            client_version=f"kubespan/{VERSION}",
            backoff=self._backoff(),
        )

    # -- our own record -------------------------------------------------------------------

    def _current_publication(self) -> Publication:
        assert self._publication is not None, "start() publishes before sessions run"
        return self._publication

    def _public_ip_changed(self) -> None:
        # A new public IP is a new endpoint candidate: republish now, not at the next tick.
        if self._host_json is not None:
            self._update_local(self._host_json)

    def _update_local(self, ip_addr_json: str) -> bool:
        """Recompute our record; on change seal it (fresh nonce) and republish. True if changed."""
        assert self.identity is not None and self.address is not None
        self._host_json = ip_addr_json
        ips = node_addresses(
            parse_ip_addr_json(ip_addr_json),
            exclude_links={self.interface},
            mesh_prefix=self.mesh_prefix,
        )
        public = [s.public_ip for s in self.sessions if s.public_ip is not None]
        endpoints = tuple(local_endpoints(ips, public, self.config))
        node = self.config.node
        hostname = node.hostname or self._hostname
        record = AffiliateRecord(
            node_id=self.identity.node_id,
            addresses=tuple(ips),
            hostname=hostname,
            nodename=node.nodename or hostname,
            machine_type="worker",
            operating_system=f"Linux (kubespan {VERSION})",
            kubespan=KubeSpanInfo(
                public_key=self.identity.public_key,
                address=self.address,
                additional_addresses=self.config.mesh.advertised_networks,
                exclude_advertised_addresses=self.config.mesh.excluded_networks,
            ),
        )
        local = _Local(record, endpoints)
        if local == self._local:
            return False
        self._local = local
        previous = self._publication.version if self._publication else 0
        # A fresh nonce per sealing: AES-GCM must never reuse one under the same key.
        self._publication = Publication(
            version=previous + 1,
            data=seal_record(self.key, record, os.urandom(12)),
            endpoints=tuple(seal_endpoint_addr(self.key, e) for e in endpoints),
        )
        log.info(
            "local record v%d: addresses %s, endpoints %s",
            self._publication.version,
            ", ".join(map(str, ips)) or "-",
            ", ".join(map(str, endpoints)) or "-",
        )
        for session in self.sessions:
            session.republish()
        return True

    async def _host_loop(self) -> None:
        interval = self.config.timing.reconcile.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                out = await self._runner.run(["ip", "-j", "-d", "addr", "show"])
                self._update_local(out.decode())
            except (WgError, ValueError) as exc:
                log.warning("reading local addresses: %s", exc)

    # -- reconcile ------------------------------------------------------------------------

    async def _bring_up(self) -> None:
        assert self.address is not None
        await self.device.bring_up(self.address, self.mesh_prefix, self.key.wireguard_psk)
        self._device_ready = True

    async def _reconcile_loop(self) -> None:
        interval = self.config.timing.reconcile.total_seconds()
        while True:
            if await wait_event(self._changed, interval):
                await asyncio.sleep(_COALESCE)
            self._changed.clear()
            try:
                await self.reconcile()
                self.last_error = None
            except (WgError, WgDumpError, ValueError, OSError) as exc:
                if str(exc) != self.last_error:
                    log.warning("reconcile: %s", exc)
                self.last_error = str(exc)

    def merged(self) -> dict[str, DecodedAffiliate]:
        """Affiliates from every session, merged in configured endpoint order."""
        return merge_affiliates([list(s.affiliates.values()) for s in self.sessions])

    async def reconcile(self) -> None:
        """One pass: desired peers vs `wg show`, states, rotation, plan, apply, nft."""
        assert self.identity is not None
        if not self._device_ready:
            await self._bring_up()
        dump = await self.device.dump()
        if dump is None:
            # The link vanished (deleted by hand, wireguard-go killed): rebuild it next pass.
            self._device_ready = False
            raise WgError(["wg", "show"], 1, f"{self.interface} does not answer; recreating it")
        now = self._clock()
        specs = peer_specs(self.identity.node_id, self.merged().values(), self.config)
        have = {p.public_key: p for p in dump.peers}
        statuses: dict[str, PeerStatus] = {}
        peers: list[WgPeer] = []
        for spec in specs:
            observed = self._observe(spec, have.get(spec.public_key), now)
            step = advance(observed, spec.endpoints, now, self._durations)
            shown = self._shown_state(spec.public_key, observed, step.status, step.endpoint_changed)
            if step.endpoint_changed:
                log.info("peer %s: trying endpoint %s", spec.label, step.status.last_used_endpoint)
            if self._shown.get(spec.public_key) != shown:
                log.info("peer %s: %s", spec.label, shown)
            self._shown[spec.public_key] = shown
            statuses[spec.public_key] = step.status
            peers.append(
                WgPeer(
                    public_key=spec.public_key,
                    endpoint=step.wg_endpoint,
                    allowed_ips=spec.allowed_ips,
                    persistent_keepalive=self.config.mesh.keepalive_seconds,
                    preshared_key=self.key.wireguard_psk,
                )
            )
        self._statuses = statuses
        self._seen = {k: v for k, v in self._seen.items() if k in statuses}
        self._shown = {k: v for k, v in self._shown.items() if k in statuses}
        self._specs = specs
        self._dump = dump
        desired = MeshSpec(
            interface=self.interface,
            public_key=self.identity.public_key,
            private_key_file=str(self.identity.private_key_path),
            listen_port=self.config.mesh.port,
            fwmark=FWMARK_WG,
            mtu=self.config.mesh.mtu,
            peers=tuple(peers),
        )
        ops = plan(dump, desired)
        if ops:
            removed = sum(isinstance(op, RemovePeer) for op in ops)
            await self.device.apply(ops)
            log.info(
                "reconfigured %s: %d ops (%d removed), %d peers",
                self.interface,
                len(ops),
                removed,
                len(peers),
            )
        await self.device.set_routed(self._routed(specs), self.mesh_prefix)
        self.passes += 1

    def _observe(self, spec: PeerSpec, peer: PeerState | None, now: datetime) -> PeerStatus:
        status = self._statuses.get(spec.public_key)
        if status is None:
            status = PeerStatus(label=spec.label)
            if peer is not None and peer.endpoint is not None:
                # A peer configured by an earlier run of the agent: adopt its endpoint rather
                # than restart the rotation at [0], which would break a working tunnel.
                status = replace(status, last_used_endpoint=peer.endpoint)
        status = replace(status, label=spec.label)
        if peer is None:
            # We are about to add it: whatever it receives from now on is news (wg's
            # handshake time has 1 s resolution and may not prove a handshake after our
            # endpoint change; rx growth does).
            self._seen[spec.public_key] = _Seen(0, None)
            return replace(status, endpoint=None, last_handshake=None, rx=0, tx=0)
        return replace(
            status,
            endpoint=peer.endpoint,
            last_handshake=self._liveness(spec.public_key, peer, now),
            rx=peer.rx,
            tx=peer.tx,
        )

    def _shown_state(
        self, key: str, before: PeerStatus, after: PeerStatus, rotated: bool
    ) -> ConnectionState:
        """The state to report: like the state machine's, but `down` survives a rotation.

        advance() marks a peer `unknown` the moment it rotates a down peer to its next
        candidate (Talos UpdateEndpoint), so a dead peer with several candidates would cycle
        unknown -> rotate -> unknown and never be reported down. Once judged down, a peer is
        shown down until it comes up; `unknown` stays for peers never judged yet.
        """
        if after.state is not ConnectionState.UNKNOWN:
            return after.state
        if rotated and before.last_used_endpoint is not None:
            return ConnectionState.DOWN  # rotation away from a used endpoint means it was down
        if self._shown.get(key) is ConnectionState.DOWN:
            return ConnectionState.DOWN
        return after.state

    def _liveness(self, key: str, peer: PeerState, now: datetime) -> datetime | None:
        """The later of the last handshake and the last time the peer's rx counter grew.

        WireGuard only counts authenticated packets, so rx growth proves the peer is alive as
        well as a handshake does. Handshakes alone come every 2 minutes at best, which is
        why Talos needs 275 s to call a peer down; with rx, a persistent keepalive shorter
        than `timing.peer_down` is enough (and that is what makes short test timings work).
        """
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = seen = _Seen(peer.rx, None)
        elif peer.rx != seen.rx:
            seen.at = now if peer.rx > seen.rx else seen.at
            seen.rx = peer.rx
        times = [t for t in (peer.latest_handshake, seen.at) if t is not None]
        return max(times) if times else None

    def _routed(self, specs: list[PeerSpec]) -> list[IPNetwork]:
        # Force routing (Talos' default, !allowDownPeerBypass): every peer's addresses go into
        # the mesh whatever its state, so traffic for a down peer is dropped rather than sent
        # in clear. Without it, only up peers are routed through the mesh.
        force = self.config.mesh.force_routing
        return [
            net
            for spec in specs
            if force or self._shown.get(spec.public_key) is ConnectionState.UP
            for net in spec.allowed_ips
        ]

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Everything `kubespan status` shows, JSON-ready."""
        return {
            "self": self.self_status(),
            "peers": self.peers_status(),
            "members": self.members_status(),
            "sessions": [s.status() for s in self.sessions],
        }

    def self_status(self) -> dict[str, object]:
        identity, local = self.identity, self._local
        return {
            "node_id": identity.node_id if identity else None,
            "public_key": identity.public_key if identity else None,
            "address": str(self.address) if self.address else None,
            "interface": self.interface,
            "backend": self.device.backend,
            "nodename": local.record.nodename if local else None,
            "endpoints": [str(e) for e in local.endpoints] if local else [],
            "reconcile_passes": self.passes,
            "last_error": self.last_error,
        }

    def peers_status(self) -> list[dict[str, object]]:
        have = {p.public_key: p for p in self._dump.peers} if self._dump else {}
        out: list[dict[str, object]] = []
        for spec in self._specs:
            status = self._statuses.get(spec.public_key, PeerStatus(label=spec.label))
            peer = have.get(spec.public_key)
            handshake = peer.latest_handshake if peer else None
            out.append(
                {
                    "label": spec.label,
                    "node_id": spec.node_id,
                    "public_key": spec.public_key,
                    "endpoint": str(status.endpoint) if status.endpoint else None,
                    "state": str(self._shown.get(spec.public_key, status.state)),
                    "last_handshake": handshake.isoformat() if handshake else None,
                    "rx": status.rx,
                    "tx": status.tx,
                    "allowed_ips": [str(n) for n in spec.allowed_ips],
                    "endpoints": [str(e) for e in spec.endpoints],
                    "warnings": list(spec.warnings),
                }
            )
        return out

    def members_status(self) -> list[dict[str, object]]:
        affiliates = list(self.merged().values())
        if self._local is not None:
            affiliates.append(DecodedAffiliate(record=self._local.record))
        return [
            {
                "nodename": m.nodename,
                "node_id": m.node_id,
                "hostname": m.hostname,
                "machine_type": m.machine_type,
                "operating_system": m.operating_system,
                "addresses": [str(a) for a in m.addresses],
            }
            for m in members(affiliates)
        ]


def build_agent(
    config: Config,
    state_dir: Path,
    interface: str,
    *,
    runner: Runner,
    clients: ClientFactory = connect,
    clock: Clock = utcnow,
    backoff: Callable[[], Backoff] = Backoff,
    hostname: str | None = None,
    socket_path: Path | bool | None = True,
) -> Agent:
    """The composition root: wire config, runner, discovery clients and clock into an Agent.

    `socket_path=True` serves the status API at `<state_dir>/kubespan.sock`; None or False
    serves none (tests that only drive the loop).
    """
    if socket_path is True:
        path: Path | None = state_dir / SOCKET_NAME
    elif socket_path is False or socket_path is None:
        path = None
    else:
        path = socket_path
    return Agent(
        config,
        state_dir,
        interface,
        runner=runner,
        clients=clients,
        clock=clock,
        backoff=backoff,
        hostname=hostname or socket.gethostname(),
        socket_path=path,
    )

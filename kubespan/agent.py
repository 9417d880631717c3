"""The node agent: composition root and its loop (observe often, reconcile on change).

    sessions (one per discovery endpoint) --maps--> merge --> peer specs --+
    device.read() ---------------------------------------------------------+--> peer_pass()
    peer_pass (reconcile.py): observe + advance each peer (peer_state.py), plan
        --> device.apply(ops), device.set_routed(networks), own record's mesh health

Two kinds of pass, one code path. A reconcile recomputes the peer specs from the affiliate
maps (on every discovery change, and every `timing.reconcile`); an observation reuses the
last specs and only reads the device, every second while any peer is not up and every few
seconds otherwise (reconcile.observe_interval). Both fold the read into the peer tracks,
rotate endpoints and apply whatever plan() finds, so status, rotation and repair follow
each read of WireGuard rather than the 30 s tick (Talos' only one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import IPv6Address
from pathlib import Path

from kubespan.addressing import eui64_address, first_mac, ula_prefix
from kubespan.config import Config
from kubespan.device import MeshDevice, PeerOpsError
from kubespan.identity import Identity, load_or_create_identity
from kubespan.mesh_health import local_health
from kubespan.own_record import VERSION, OwnRecord
from kubespan.peer_rules import discovery_addresses
from kubespan.peer_state import PeerTrack
from kubespan.peers import PeerSpec, Refused, build_peers
from kubespan.poke import udp_poke
from kubespan.reconcile import PassSettings, observe_interval, pass_settings, peer_pass, to_poke
from kubespan.session import Backoff, ClientFactory, Publication, Session, wait_event
from kubespan.signing import node_signer
from kubespan.status import AgentStatus
from kubespan.status_api import StatusServer
from kubespan.wg import WgError
from kubespan.wgdump import WgDumpError
from membership.health import MeshHealth
from membership.members import merge_affiliates
from membership.record import DecodedAffiliate
from membership.sealing import ClusterKey

log = logging.getLogger(__name__)

SOCKET_NAME = "kubespan.sock"
_COALESCE = 0.05
"""Seconds to wait after a change before reconciling, so a burst of watch events (a
snapshot, many nodes joining at once) costs one pass instead of one per event."""

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Agent:
    """One node's mesh agent. Build it with build_agent(); `run()` until stop() or leave()."""

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        device: MeshDevice,
        *,
        clients: ClientFactory,
        clock: Clock,
        backoff: Callable[[], Backoff],
        hostname: str,
        socket_path: Path | None,
        poke: Callable[[IPv6Address], None] = udp_poke,
    ) -> None:
        self.config = config
        self._poke = poke
        self.state_dir = state_dir
        self.device = device
        self.interface = device.interface
        self._clock = clock
        self._hostname = hostname
        self._socket_path = socket_path
        self.key = ClusterKey(config.cluster.secret)
        self.mesh_prefix = ula_prefix(config.cluster.id)
        self._settings: PassSettings | None = None
        self._interval = config.timing.reconcile.total_seconds()
        self._clients = clients
        self._backoff = backoff
        self.identity: Identity | None = None
        self.address: IPv6Address | None = None
        self.sessions: list[Session] = []
        self.own: OwnRecord | None = None
        self._device_ready = False
        self.specs: list[PeerSpec] = []
        self.refused: tuple[Refused, ...] = ()
        """Records not made peers (a broken or unusable key), shown by `kubespan status`."""
        self.tracks: dict[str, PeerTrack] = {}
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: StatusServer | None = None
        self.passes = 0
        self.observations = 0
        self.last_error: str | None = None
        self.left = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Identity, mesh address, our record, the link; raises IdentityError/WgError/..."""
        self.identity = identity = load_or_create_identity(self.state_dir)
        host = await self.device.read_host()
        # Talos derives the address once, when the identity is established: a later MAC
        # change must not move a running node's mesh address under its peers.
        self.address = eui64_address(self.mesh_prefix, first_mac(host.links))
        log.info(
            "node %s, public key %s, mesh address %s",
            identity.node_id,
            identity.public_key,
            self.address,
        )
        self.own = OwnRecord(
            self.config,
            identity,
            self.address,
            hostname=self._hostname,
            interface=self.interface,
            public_ips=lambda: [s.public_ip for s in self.sessions if s.public_ip is not None],
            on_change=self._republish,
        )
        self._settings = pass_settings(self.config, identity, self.interface)
        self.sessions = [self._session(ep.url) for ep in self.config.discovery.endpoints]
        self.own.update(host.addresses)
        await self._bring_up()

    async def run(self) -> None:
        """start(), then serve until stop() or leave(); keeps the link on a plain stop."""
        if self._socket_path is not None:
            # The state dir must exist (the identity creates it, 0700) before the socket,
            # and the socket comes before the link: a second agent started on the same state
            # dir by mistake must fail here, before it touches the interface.
            self.identity = load_or_create_identity(self.state_dir)
            self._server = StatusServer(self._socket_path, AgentStatus(self))
            await self._server.start()
        try:
            await self.start()
            self._tasks = [asyncio.create_task(s.run()) for s in self.sessions]
            self._tasks.append(asyncio.create_task(self._reconcile_loop()))
            assert self.own is not None
            self._tasks.append(asyncio.create_task(self.own.follow(self.device, self._interval)))
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
            publication=self._publication,
            on_change=self._changed.set,
            on_public_ip=self._public_ip_changed,
            client_version=f"kubespan/{VERSION}",
            backoff=self._backoff(),
            signer=node_signer(
                self.identity, self.config.cluster.id, self.config.cluster.secret_bytes
            ),
        )

    def _publication(self) -> Publication:
        assert self.own is not None, "start() builds our record before sessions run"
        return self.own.current()

    def _public_ip_changed(self) -> None:
        assert self.own is not None, "start() builds our record before sessions run"
        self.own.refresh()  # a new endpoint candidate: republish now, not at the next tick

    def _republish(self) -> None:
        for session in self.sessions:
            session.republish()

    # -- reconcile ------------------------------------------------------------------------

    async def _bring_up(self) -> None:
        assert self.address is not None
        await self.device.bring_up(self.address, self.mesh_prefix, self.key.wireguard_psk)
        self._device_ready = True

    async def _reconcile_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_reconcile = next_observe = loop.time()
        while True:
            wait = min(next_reconcile, next_observe) - loop.time()
            if await wait_event(self._changed, max(wait, 0.0)):
                await asyncio.sleep(_COALESCE)
            now = loop.time()
            changed = self._changed.is_set()
            self._changed.clear()
            # A record that changed in nothing a peer spec depends on (its mesh health, most
            # often) needs no pass: while a mesh converges that is most changes, and each
            # pass costs a device read on every node.
            full = now >= next_reconcile or (
                changed and (not self._device_ready or self._specs() != self.specs)
            )
            if not full and now < next_observe:
                continue
            if full:
                next_reconcile = now + self._interval
            try:
                await self.reconcile(full=full)
                self.last_error = None
            except (WgError, WgDumpError, ValueError, OSError) as exc:
                if str(exc) != self.last_error:
                    log.warning("reconcile: %s", exc)
                self.last_error = str(exc)
            assert self._settings is not None
            wait = observe_interval(self.tracks, self._clock(), self._settings)
            next_observe = loop.time() + wait

    def mesh_view(self) -> MeshHealth:
        """This node's view of its peers now (what its record publishes, but current)."""
        assert self._settings is not None, "start() builds the settings"
        peer_down = self._settings.durations.peer_down
        return local_health(self.specs, self.tracks, self._clock(), peer_down)

    def _specs(self) -> list[PeerSpec]:
        """Desired peers from the merged records; refused records are kept for status."""
        assert self.identity is not None
        own = self.own.local.record.addresses if self.own and self.own.local else ()
        peers = build_peers(
            self.identity.node_id,
            self.merged().values(),
            self.config,
            own_key=self.identity.public_key,
            own_addresses=(*own, self.address) if self.address else own,
            discovery=discovery_addresses(e.url for e in self.config.discovery.endpoints),
            previous=self.specs,
        )
        self.refused = peers.refused
        return list(peers.specs)

    def merged(self) -> dict[str, DecodedAffiliate]:
        """Affiliates from every session, merged in configured endpoint order."""
        return merge_affiliates([list(s.affiliates.values()) for s in self.sessions])

    async def reconcile(self, *, full: bool = True) -> None:
        """One pass: desired peers vs what WireGuard reports, states, rotation, plan, apply, nft.

        `full=False` is an observation: the peer specs of the last full pass are kept.
        """
        assert self.identity is not None
        if not self._device_ready:
            await self._bring_up()
        current = await self.device.read()
        if current is None:
            # The link vanished (deleted by hand, wireguard-go killed): rebuild it next pass.
            self._device_ready = False
            raise WgError(["wg", "show"], 1, f"{self.interface} does not answer; recreating it")
        specs = self._specs() if full else self.specs
        assert self._settings is not None
        now = self._clock()
        step = peer_pass(specs, self.tracks, current, now, self._settings)
        for message in step.messages:
            log.info("%s", message)
        self.tracks, self.specs = step.tracks, specs
        failed: PeerOpsError | None = None
        if step.ops:
            try:
                await self.device.apply(step.ops)
            except PeerOpsError as exc:
                failed = exc  # the other peers are configured: still route them
            log.info("reconfigured %s: %s", self.interface, step.summary)
        await self.device.set_routed(step.routed, self.mesh_prefix)
        if full:
            self.passes += 1
        else:
            self.observations += 1
        for address in to_poke(specs, self.tracks, now, self._settings.keepalive):
            self._poke(address)  # see kubespan/poke.py
        if self.own is not None:
            peer_down = self._settings.durations.peer_down
            self.own.set_health(local_health(specs, self.tracks, now, peer_down))
        if failed is not None:
            raise failed

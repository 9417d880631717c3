"""This node's own affiliate record: built from the host's addresses, sealed, versioned.

The record only changes when what it says changes, so that watch traffic from other nodes
never echoes back as publishes; every change is sealed with a fresh nonce and a new
version, which the sessions publish at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv6Address

from discovery.version import SERVER_VERSION
from kubespan.addressing import AddressInfo, node_addresses, ula_prefix
from kubespan.config import Config
from kubespan.device import MeshDevice
from kubespan.identity import Identity
from kubespan.mesh_health import same_view
from kubespan.peers import local_endpoints
from kubespan.session import Publication
from kubespan.wg import WgError
from membership.health import MeshHealth, fit
from membership.limits import AFFILIATE_DATA_MAX
from membership.record import AffiliateRecord, EndpointAddr, IPAddress, KubeSpanInfo
from membership.sealing import NONCE_SIZE, TAG_SIZE, ClusterKey, seal_endpoint_addr, seal_record
from membership.talos_codec import encode_affiliate

log = logging.getLogger(__name__)

VERSION = SERVER_VERSION
HEALTH_MIN_INTERVAL = 2.0
"""Seconds between two publishes of a changed health view: while a large mesh converges,
every node's view changes many times a second, and each publish is a write and a watch event
on every other node."""
HEALTH_MAX_AGE = 300.0
"""Seconds after which an unchanged view is republished anyway, so its handshake ages and
`observed_at` stay roughly current."""


@dataclass(frozen=True, slots=True)
class LocalRecord:
    """What we say about ourselves: the record and the endpoints published beside it."""

    record: AffiliateRecord
    endpoints: tuple[EndpointAddr, ...]


def build_local(
    config: Config,
    identity: Identity,
    address: IPv6Address,
    ips: Sequence[IPAddress],
    public_ips: Iterable[IPAddress],
    hostname: str,
    health: MeshHealth | None = None,
) -> LocalRecord:
    """Our record from the node's routed IPs and the public IPs the services saw; pure.

    Like Talos, the mesh address is published among the addresses (last, and never as an
    endpoint). `health` is fitted into what the 2 KiB data limit leaves (membership.health).
    """
    node = config.node
    hostname = node.hostname or hostname
    record = AffiliateRecord(
        node_id=identity.node_id,
        addresses=(*(ip for ip in ips if ip != address), address),
        hostname=hostname,
        nodename=node.nodename or hostname,
        machine_type=node.machine_type,
        operating_system=f"Linux (kubespan {VERSION})",
        kubespan=KubeSpanInfo(
            public_key=identity.public_key,
            address=address,
            additional_addresses=config.mesh.advertised_networks,
            exclude_advertised_addresses=config.mesh.excluded_networks,
        ),
    )
    if health is not None:
        room = AFFILIATE_DATA_MAX - NONCE_SIZE - TAG_SIZE - len(encode_affiliate(record))
        record = replace(record, mesh_health=fit(health, room))
    return LocalRecord(record, tuple(local_endpoints(ips, public_ips, config)))


class OwnRecord:
    """The current LocalRecord and its sealed Publication, kept up to date with the host."""

    def __init__(
        self,
        config: Config,
        identity: Identity,
        address: IPv6Address,
        *,
        hostname: str,
        interface: str,
        public_ips: Callable[[], Iterable[IPAddress]],
        on_change: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._key = ClusterKey(config.cluster.secret)
        self._identity = identity
        self._address = address
        self._hostname = hostname
        self._interface = interface
        self._mesh_prefix = ula_prefix(config.cluster.id)
        self._public_ips = public_ips
        self._on_change = on_change
        self._addresses: tuple[AddressInfo, ...] | None = None
        self._monotonic = monotonic
        self._health: MeshHealth | None = None
        self._health_at = -HEALTH_MAX_AGE
        self.local: LocalRecord | None = None
        self.publication: Publication | None = None

    def current(self) -> Publication:
        """What the sessions publish; only valid after the first update()."""
        assert self.publication is not None, "the agent updates the record before publishing"
        return self.publication

    def refresh(self) -> None:
        """Rebuild with the last host addresses (a session saw a new public IP)."""
        if self._addresses is not None:
            self.update(self._addresses)

    def set_health(self, health: MeshHealth) -> bool:
        """Publish a new view of the peers if it changed (at most every few seconds; the next
        call publishes one held back) or the last one is old; True if republished."""
        now = self._monotonic()
        since = now - self._health_at
        published = self._health
        if same_view(published, health) and (published is None or since < HEALTH_MAX_AGE):
            return False
        if since < HEALTH_MIN_INTERVAL or self._addresses is None:
            return False
        self._health, self._health_at = health, now
        return self.update(self._addresses)

    def update(self, addresses: Sequence[AddressInfo]) -> bool:
        """Rebuild from the host's addresses; on a change, seal, call on_change, return True.

        Every sealing takes a fresh nonce and the next version.
        """
        self._addresses = tuple(addresses)
        ips = node_addresses(
            self._addresses, exclude_links={self._interface}, mesh_prefix=self._mesh_prefix
        )
        local = build_local(
            self._config,
            self._identity,
            self._address,
            ips,
            self._public_ips(),
            self._hostname,
            self._health,
        )
        if local == self.local:
            return False
        self.local = local
        previous = self.publication.version if self.publication else 0
        # A fresh nonce per sealing: AES-GCM must never reuse one under the same key.
        self.publication = Publication(
            version=previous + 1,
            data=seal_record(self._key, local.record, os.urandom(12)),
            endpoints=tuple(seal_endpoint_addr(self._key, e) for e in local.endpoints),
        )
        log.info(
            "local record v%d: addresses %s, endpoints %s",
            self.publication.version,
            ", ".join(map(str, ips)) or "-",
            ", ".join(map(str, local.endpoints)) or "-",
        )
        self._on_change()
        return True

    async def follow(self, device: MeshDevice, interval: float) -> None:
        """Re-read the host's addresses every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.update((await device.read_host()).addresses)
            except (WgError, ValueError) as exc:
                log.warning("reading local addresses: %s", exc)

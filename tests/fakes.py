"""Fakes for the layers above the real adapters (never a substitute for testing those)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

from kubespan import nft
from kubespan.addressing import AddressInfo, LinkInfo
from kubespan.device import HostAddresses
from kubespan.identity import public_key_of
from kubespan.plan import CreateLink, Op, RemovePeer, SetDevice
from kubespan.wg import WgError
from kubespan.wgdump import DeviceState, PeerState, parse_endpoint
from membership.record import IPNetwork


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


# -- kubespan: the system seams (kubespan/wg.py, kubespan/device.py) ---------------------

RunHandler = Callable[[list[str], bytes | None], bytes]


class FakeRunner:
    """A Runner that records argv (and stdin) and answers by the longest matching prefix.

    Unmatched commands succeed with empty output. Canned answers are bytes, an exception to
    raise, or a handler called with (argv, stdin).
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.stdins: list[bytes | None] = []
        self._canned: list[tuple[tuple[str, ...], bytes | Exception | RunHandler]] = []

    def on(self, *prefix: str, output: bytes | str | Exception | RunHandler = b"") -> None:
        answer = output.encode() if isinstance(output, str) else output
        self._canned.append((prefix, answer))

    async def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        args = list(argv)
        self.calls.append(args)
        self.stdins.append(stdin)
        best: bytes | Exception | RunHandler = b""
        best_len = -1
        for prefix, answer in self._canned:
            # Later registrations win ties, so a test can override a default.
            if tuple(args[: len(prefix)]) == prefix and len(prefix) >= best_len:
                best, best_len = answer, len(prefix)
        if isinstance(best, Exception):
            raise best
        if callable(best):
            return best(args, stdin)
        return best

    def commands(self, *prefix: str) -> list[list[str]]:
        """The recorded argvs that start with `prefix`."""
        return [c for c in self.calls if tuple(c[: len(prefix)]) == prefix]


@dataclass
class FakePeer:
    """A peer as WireGuard holds it; tests play the remote side through handshake and rx."""

    public_key: str
    preshared_key: str | None = None
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    handshake: int = 0
    rx: int = 0
    tx: int = 0
    keepalive: int = 0


@dataclass
class FakeDevice:
    """A MeshDevice (kubespan/device.py) that keeps the host, the link and its peers as data.

    It applies plan ops field by field and never builds or parses an argv: that is the real
    Device's job, tested in tests/kubespan/test_device.py. The routed set is rendered with
    the real nft renderer and rewritten only when it changes, as the real Device does.
    """

    interface: str = "kstest0"
    mac: str = "02:00:00:00:00:01"
    addresses: list[tuple[str, str, int]] = field(
        default_factory=lambda: [("eth0", "10.99.0.11", 24)]
    )
    kernel_wireguard: bool = False
    mtu: int = 1420
    link: str | None = None
    link_kind: str | None = None
    backend: str | None = None
    answers: bool = True
    """False: the link exists but WireGuard does not answer (wireguard-go killed)."""
    private_key: str | None = None
    listen_port: int = 0
    fwmark: int = 0
    peers: dict[str, FakePeer] = field(default_factory=dict)
    address: str | None = None
    policy_routing: bool = False
    nft: str | None = None
    nft_writes: int = 0
    creates: int = 0
    applied: list[Op] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    """The seam's methods in call order."""

    async def read_host(self) -> HostAddresses:
        self.calls.append("read_host")
        links = {"lo": LinkInfo(name="lo", link_type="loopback", mac="00:00:00:00:00:00")}
        for name, _, _ in self.addresses:
            links.setdefault(name, LinkInfo(name=name, link_type="ether", mac=self.mac))
        infos = tuple(AddressInfo(name, ip_address(ip), n) for name, ip, n in self.addresses)
        return HostAddresses(tuple(links.values()), infos)

    def _create(self) -> None:
        kind = "wireguard" if self.kernel_wireguard else "tun"
        self.link, self.link_kind, self.creates = self.interface, kind, self.creates + 1
        self.backend = "kernel" if self.kernel_wireguard else "wireguard-go"
        self.private_key, self.listen_port, self.fwmark, self.peers = None, 0, 0, {}
        self.answers = True

    async def bring_up(self, address: IPv6Address, mesh_prefix: IPv6Network, psk: str) -> None:
        self.calls.append("bring_up")
        if self.link is None or not self.answers:
            self._create()
        else:
            self.backend = "kernel" if self.link_kind == "wireguard" else "wireguard-go"
        self.address = f"{address}/{mesh_prefix.prefixlen}"
        self.policy_routing = True

    async def read(self) -> DeviceState | None:
        self.calls.append("read")
        if self.link is None or not self.answers:
            return None
        peers = tuple(
            PeerState(
                public_key=p.public_key,
                preshared_key=p.preshared_key,
                endpoint=parse_endpoint(p.endpoint) if p.endpoint else None,
                allowed_ips=tuple(ip_network(a) for a in p.allowed_ips),
                latest_handshake=datetime.fromtimestamp(p.handshake, UTC) if p.handshake else None,
                rx=p.rx,
                tx=p.tx,
                persistent_keepalive=p.keepalive,
            )
            for p in self.peers.values()
        )
        public = public_key_of(self.private_key) if self.private_key else None
        return DeviceState(
            private_key=self.private_key,
            public_key=public,
            listen_port=self.listen_port,
            fwmark=self.fwmark,
            peers=peers,
        )

    async def apply(self, ops: Sequence[Op]) -> None:
        self.calls.append("apply")
        for op in ops:
            self.applied.append(op)
            if isinstance(op, CreateLink):
                self._create()
            elif self.link is None or not self.answers:
                raise WgError(["wg", "set"], 1, "Unable to modify interface: No such device")
            elif isinstance(op, SetDevice):
                if op.private_key_file is not None:
                    # The op names the key file, as for the real device; the fake reads it too.
                    self.private_key = Path(op.private_key_file).read_text().strip()
                self.listen_port = self.listen_port if op.listen_port is None else op.listen_port
                self.fwmark = self.fwmark if op.fwmark is None else op.fwmark
            elif isinstance(op, RemovePeer):
                self.peers.pop(op.public_key, None)
            else:
                peer = self.peers.setdefault(op.public_key, FakePeer(op.public_key))
                peer.preshared_key = op.preshared_key
                if op.endpoint is not None:
                    peer.endpoint = str(op.endpoint)
                peer.keepalive = op.persistent_keepalive
                peer.allowed_ips = tuple(str(n) for n in op.allowed_ips)

    async def set_routed(self, networks: Iterable[IPNetwork], mesh_prefix: IPv6Network) -> bool:
        self.calls.append("set_routed")
        ruleset = nft.render_ruleset(networks, mtu=self.mtu, mesh_prefix=mesh_prefix)
        if ruleset == self.nft:
            return False
        self.nft, self.nft_writes = ruleset, self.nft_writes + 1
        return True

    async def teardown(self) -> list[str]:
        self.calls.append("teardown")
        self.link = self.link_kind = self.address = None
        self.peers = {}
        self.policy_routing = False
        self.nft = nft.delete_ruleset()
        return []


# The discovery fake lives in its own module; tests import it from here too.
from tests.fake_discovery import FakeDiscovery, FakeDiscoveryClient  # noqa: E402

__all__ = [
    "FakeClock",
    "FakeDevice",
    "FakeDiscovery",
    "FakeDiscoveryClient",
    "FakePeer",
    "FakeRunner",
]

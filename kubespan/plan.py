"""Plan the WireGuard changes that turn the device's actual state into the desired one.

Talos' LinkSpecController semantics (reference 5): peers are diffed one by one with a
merge-walk by public key and changed peers are re-set individually. The device is never
"replace all peers", because that would drop every tunnel for a moment on each change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import TypeAlias

from kubespan.config_defaults import DEFAULT_KEEPALIVE_SECONDS
from kubespan.wgdump import DeviceState, PeerState
from membership.record import EndpointAddr, IPNetwork


@dataclass(frozen=True, slots=True, kw_only=True)
class WgPeer:
    """A desired peer. `endpoint=None` means "keep whatever WireGuard has" (roaming)."""

    public_key: str
    endpoint: EndpointAddr | None
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int = DEFAULT_KEEPALIVE_SECONDS
    preshared_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSpec:
    """The desired device. `public_key` identifies the key in `private_key_file`."""

    interface: str
    public_key: str
    private_key_file: str
    listen_port: int
    """0 means "any" and is never a change, as in Talos."""
    fwmark: int
    mtu: int
    peers: tuple[WgPeer, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateLink:
    interface: str
    mtu: int


@dataclass(frozen=True, slots=True)
class SetDevice:
    """Device settings to change; None fields stay as they are."""

    interface: str
    private_key_file: str | None = None
    listen_port: int | None = None
    fwmark: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AddPeer:
    interface: str
    public_key: str
    endpoint: EndpointAddr | None
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int
    preshared_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatePeer:
    """Re-set a peer; its allowed IPs are replaced, `endpoint=None` keeps the current one."""

    interface: str
    public_key: str
    endpoint: EndpointAddr | None
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int
    preshared_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RemovePeer:
    interface: str
    public_key: str


Op: TypeAlias = CreateLink | SetDevice | AddPeer | UpdatePeer | RemovePeer


def _peer_changed(current: PeerState, desired: WgPeer) -> bool:
    # An empty desired endpoint is not a change: it is how a roamed endpoint is kept.
    return (
        (desired.endpoint is not None and desired.endpoint != current.endpoint)
        or frozenset(desired.allowed_ips) != frozenset(current.allowed_ips)
        or desired.persistent_keepalive != current.persistent_keepalive
        or desired.preshared_key != current.preshared_key
    )


def _set_device(current: DeviceState, desired: MeshSpec) -> SetDevice | None:
    op = SetDevice(
        desired.interface,
        private_key_file=(
            desired.private_key_file if current.public_key != desired.public_key else None
        ),
        listen_port=(
            desired.listen_port
            if desired.listen_port and desired.listen_port != current.listen_port
            else None
        ),
        fwmark=desired.fwmark if desired.fwmark != current.fwmark else None,
    )
    return op if op != SetDevice(desired.interface) else None


def _peer_op(
    kind: type[AddPeer] | type[UpdatePeer], interface: str, want: WgPeer
) -> AddPeer | UpdatePeer:
    return kind(
        interface=interface,
        public_key=want.public_key,
        endpoint=want.endpoint,
        allowed_ips=want.allowed_ips,
        persistent_keepalive=want.persistent_keepalive,
        preshared_key=want.preshared_key,
    )


def plan(current: DeviceState | None, desired: MeshSpec) -> list[Op]:
    """The ops, in apply order, that make `current` (None: no device yet) match `desired`.

    Pure and deterministic; returns [] when nothing differs. Raises ValueError when
    `desired` lists a public key twice.
    """
    wanted = sorted(desired.peers, key=lambda p: p.public_key)
    for a, b in pairwise(wanted):
        if a.public_key == b.public_key:
            raise ValueError(f"desired peers list {a.public_key} twice")
    ops: list[Op] = []
    if current is None:
        ops.append(CreateLink(desired.interface, desired.mtu))
        current = DeviceState()
    device = _set_device(current, desired)
    if device is not None:
        ops.append(device)
    have = sorted(current.peers, key=lambda p: p.public_key)
    i = j = 0
    while i < len(have) or j < len(wanted):
        if j == len(wanted) or (i < len(have) and have[i].public_key < wanted[j].public_key):
            ops.append(RemovePeer(desired.interface, have[i].public_key))
            i += 1
            continue
        want = wanted[j]
        if i == len(have) or want.public_key < have[i].public_key:
            ops.append(_peer_op(AddPeer, desired.interface, want))
        else:
            if _peer_changed(have[i], want):
                ops.append(_peer_op(UpdatePeer, desired.interface, want))
            i += 1
        j += 1
    return ops


def wg_set_argv(
    op: Op, psk_path: str | None = None, key_path: str | None = None, *, wg: str = "wg"
) -> list[str]:
    """argv of the `wg set` command for `op`; secrets are passed as file paths only.

    `psk_path` must name a file holding `op.preshared_key` when it is set; `key_path`
    overrides SetDevice's private key file. Raises ValueError for CreateLink (an `ip`
    job) or a missing psk_path.
    """
    if isinstance(op, CreateLink):
        raise ValueError("CreateLink is applied with ip(8) or wireguard-go, not wg set")
    argv = [wg, "set", op.interface]
    if isinstance(op, SetDevice):
        key_file = key_path or op.private_key_file
        if key_file is not None:
            argv += ["private-key", key_file]
        if op.listen_port is not None:
            argv += ["listen-port", str(op.listen_port)]
        if op.fwmark is not None:
            argv += ["fwmark", f"{op.fwmark:#x}" if op.fwmark else "off"]
        return argv
    argv += ["peer", op.public_key]
    if isinstance(op, RemovePeer):
        return [*argv, "remove"]
    if op.preshared_key is None:
        psk_path = "/dev/null"  # wg's way to clear a preshared key
    elif psk_path is None:
        raise ValueError("the peer has a preshared key: pass psk_path, never the key")
    argv += ["preshared-key", psk_path]
    if op.endpoint is not None:
        argv += ["endpoint", str(op.endpoint)]
    keepalive = op.persistent_keepalive
    argv += ["persistent-keepalive", str(keepalive) if keepalive else "off"]
    # `allowed-ips` replaces the peer's list, matching Talos' ReplaceAllowedIPs.
    return [*argv, "allowed-ips", ",".join(str(n) for n in op.allowed_ips)]

"""The mesh link on this machine: bring-up, applying planned ops, force routing, teardown.

`MeshDevice` is what the agent's loop needs; `Device` implements it with `ip`/`wg`/`nft`.

Every step is idempotent so that a restarted agent (or one whose previous run was killed)
converges on the same state instead of failing on "File exists": links and addresses are
checked or `replace`d, policy rules are looked up before they are added, and the nft table
is replaced in one transaction. Only `Runner` touches the system.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Protocol

from kubespan import nft
from kubespan.addressing import AddressInfo, LinkInfo, parse_ip_addr_json, parse_ip_link_json
from kubespan.plan import CreateLink, Op, SetDevice, wg_set_argv
from kubespan.wg import Runner, WgError
from kubespan.wgdump import DeviceState, parse_wg_dump
from membership.record import IPNetwork

log = logging.getLogger(__name__)

KERNEL = "kernel"
USERSPACE = "wireguard-go"
PSK_FILE = "preshared.key"
WIREGUARD_GO_SOCKETS = Path("/var/run/wireguard")


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """The host's links and addresses, from one `ip -j -d addr show`."""

    links: tuple[LinkInfo, ...]
    addresses: tuple[AddressInfo, ...]


class MeshDevice(Protocol):
    """The seam between the agent's loop and the system: the link, its peers, routing.

    `Device` drives `ip`, `wg` and `nft` through a Runner; tests use tests/fakes.py's
    FakeDevice, which keeps the same state as data.
    """

    interface: str
    backend: str | None
    """`kernel` or `wireguard-go` once the link is up; None before."""

    async def read_host(self) -> HostAddresses:
        """The host's links and addresses; raises WgError, or ValueError if unreadable."""
        ...

    async def bring_up(self, address: IPv6Address, mesh_prefix: IPv6Network, psk: str) -> None:
        """Create or adopt the link, set PSK, MTU, address, up, policy routing; idempotent."""
        ...

    async def read(self) -> DeviceState | None:
        """The device and its peers as WireGuard reports them; None if it does not answer."""
        ...

    async def apply(self, ops: Sequence[Op]) -> None:
        """Apply planned ops in order; a link or device failure raises WgError at once, peer
        failures raise PeerOpsError after every other op was applied."""
        ...

    async def set_routed(self, networks: Iterable[IPNetwork], mesh_prefix: IPv6Network) -> bool:
        """Route `networks` through the mesh (force routing); True if that changed anything."""
        ...

    async def teardown(self) -> list[str]:
        """Remove link, rules, nft table and PSK file; best effort, returns what failed."""
        ...


class PeerOpsError(WgError):
    """Some peer ops failed and every other op was applied; `failed` maps key -> error."""

    def __init__(self, failed: Mapping[str, WgError]) -> None:
        self.failed = dict(failed)
        first = next(iter(self.failed.values()))
        detail = "; ".join(f"peer {key}: {err.stderr or err.rc}" for key, err in failed.items())
        super().__init__(first.command, first.rc, f"{len(self.failed)} peer(s) failed: {detail}")


async def apply(
    ops: Sequence[Op],
    runner: Runner,
    *,
    psk_path: str | None,
    key_path: str | None = None,
    device: Device | None = None,
) -> None:
    """Execute planned ops in order with `wg set` (CreateLink through `device`).

    A link or device op that fails raises its WgError at once: nothing after it can work.
    A peer op that fails does not stop the others (one bad peer must never keep the rest of
    the mesh down); PeerOpsError names every failed peer once all ops ran.
    """
    failed: dict[str, WgError] = {}
    for op in ops:
        if isinstance(op, CreateLink):
            if device is None:
                raise ValueError("CreateLink needs the Device to create the link")
            await device.create()
            continue
        try:
            await runner.run(wg_set_argv(op, psk_path, key_path))
        except WgError as exc:
            if isinstance(op, SetDevice):
                raise
            failed[op.public_key] = exc
    if failed:
        raise PeerOpsError(failed)


class Device:
    """The WireGuard link `interface`; kernel module when it exists, else wireguard-go."""

    def __init__(
        self,
        interface: str,
        runner: Runner,
        *,
        state_dir: Path,
        mtu: int,
        socket_dir: Path = WIREGUARD_GO_SOCKETS,
    ) -> None:
        if not 0 < len(interface) < 16 or "/" in interface or interface.strip() != interface:
            # IFNAMSIZ is 16 with the NUL; wireguard-go also names its socket after it.
            raise ValueError(f"invalid interface name {interface!r} (1 to 15 characters)")
        self.interface = interface
        self.backend: str | None = None
        self._runner = runner
        self._mtu = mtu
        self._socket_dir = socket_dir
        self.psk_path = state_dir / PSK_FILE
        self._ruleset: str | None = None

    # -- link -----------------------------------------------------------------------------

    async def link_kind(self) -> str | None:
        """`wireguard`, `tun`, another kind, or None when the link does not exist."""
        try:
            out = await self._runner.run(["ip", "-j", "-d", "link", "show", "dev", self.interface])
        except WgError:
            return None
        try:
            links = json.loads(out)
            info = links[0].get("linkinfo") or {}
        except (ValueError, IndexError, AttributeError):
            return "unknown"
        return str(info.get("info_kind") or "unknown")

    async def create(self) -> str:
        """Create the link: kernel WireGuard if `ip` can, else wireguard-go; returns the backend."""
        try:
            await self._runner.run(
                ["ip", "link", "add", "dev", self.interface, "type", "wireguard"]
            )
            self.backend = KERNEL
        except WgError as exc:
            log.info("kernel WireGuard unavailable (%s): starting wireguard-go", exc)
            # wireguard-go daemonizes; it returns once the TUN device and its control socket
            # exist, and it exits by itself when the link is deleted.
            await self._runner.run(["wireguard-go", self.interface])
            self.backend = USERSPACE
        log.info("created %s with %s", self.interface, self.backend)
        return self.backend

    async def read_host(self) -> HostAddresses:
        """Links and addresses from `ip -j -d addr show`; raises WgError or ValueError."""
        out = (await self._runner.run(["ip", "-j", "-d", "addr", "show"])).decode()
        return HostAddresses(tuple(parse_ip_link_json(out)), tuple(parse_ip_addr_json(out)))

    async def read(self) -> DeviceState | None:
        """The device as `wg show <if> dump` reports it; None when it does not answer."""
        try:
            out = await self._runner.run(["wg", "show", self.interface, "dump"])
        except WgError:
            return None
        return parse_wg_dump(out.decode())

    async def bring_up(self, address: IPv6Address, mesh_prefix: IPv6Network, psk: str) -> None:
        """Create (or adopt) the link, write the PSK file, set MTU, address, up, policy routing."""
        kind = await self.link_kind()
        if kind is not None and kind not in ("wireguard", "tun"):
            raise WgError(["ip", "link"], 1, f"{self.interface} exists and is a {kind} link")
        if kind is not None and await self.read() is None:
            # A TUN left behind by a wireguard-go that died: nothing serves it any more.
            log.warning("%s exists but WireGuard does not answer: recreating it", self.interface)
            await self._delete_link()
            kind = None
        if kind is None:
            await self.create()
        else:
            self.backend = KERNEL if kind == "wireguard" else USERSPACE
            log.info("adopting existing %s (%s)", self.interface, self.backend)
        self.write_psk(psk)
        dev = ["dev", self.interface]
        await self._runner.run(["ip", "link", "set", *dev, "mtu", str(self._mtu)])
        # nodad: the address is unique by construction (EUI-64 of our MAC), and waiting for
        # DAD would hold traffic back for a second on every start.
        cidr = f"{address}/{mesh_prefix.prefixlen}"
        await self._runner.run(["ip", "-6", "addr", "replace", cidr, *dev, "nodad"])
        await self._runner.run(["ip", "link", "set", *dev, "up"])
        await self.ensure_policy_routing()
        self._ruleset = None  # the link may be new: rewrite nft on the next pass

    def write_psk(self, psk: str) -> None:
        """Write the preshared key file (0600) atomically; wg reads it by path, never argv."""
        tmp = self.psk_path.with_name(f".{self.psk_path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(psk + "\n")
        os.replace(tmp, self.psk_path)

    # -- WireGuard ------------------------------------------------------------------------

    async def apply(self, ops: Sequence[Op], *, key_path: str | None = None) -> None:
        """Apply planned ops; see the module-level apply()."""
        await apply(ops, self._runner, psk_path=str(self.psk_path), key_path=key_path, device=self)

    # -- force routing --------------------------------------------------------------------

    async def ensure_policy_routing(self) -> None:
        """Table 180 default routes (replace) and the fwmark rules (added only if missing)."""
        for argv in nft.ip_route_argvs(self.interface, self._mtu):
            await self._runner.run(argv)
        for family, argv in zip(("-4", "-6"), nft.ip_rule_argvs("add"), strict=True):
            if not await self._has_rule(family):
                await self._runner.run(argv)

    async def _has_rule(self, family: str) -> bool:
        out = await self._runner.run(
            ["ip", "-j", family, "rule", "show", "priority", str(nft.RULE_PRIORITY)]
        )
        try:
            rules = json.loads(out or b"[]")
        except ValueError:
            return False
        want_mark, want_mask = f"{nft.FWMARK_FORCE:#x}", f"{nft.FWMARK_MASK:#x}"
        return any(
            isinstance(r, dict)
            and r.get("fwmark") == want_mark
            and r.get("fwmask") == want_mask
            and str(r.get("table")) == str(nft.ROUTING_TABLE)
            for r in rules
        )

    async def set_routed(self, networks: Iterable[IPNetwork], mesh_prefix: IPv6Network) -> bool:
        """Replace the nft table when the routed set changed; True if nft ran."""
        ruleset = nft.render_ruleset(networks, mtu=self._mtu, mesh_prefix=mesh_prefix)
        if ruleset == self._ruleset:
            return False
        await self._runner.run(["nft", "-f", "-"], stdin=ruleset.encode())
        self._ruleset = ruleset
        return True

    # -- teardown -------------------------------------------------------------------------

    async def teardown(self) -> list[str]:
        """Remove link, rules, nft table and PSK file; best effort, returns what failed."""
        errors: list[str] = []
        try:
            await self._delete_link()
        except WgError as exc:
            errors.append(str(exc))
        for argv in nft.ip_rule_argvs("del"):
            # Delete until none is left, in case an older run added duplicates.
            for _ in range(16):
                try:
                    await self._runner.run(argv)
                except WgError:
                    break
        try:
            await self._runner.run(["nft", "-f", "-"], stdin=nft.delete_ruleset().encode())
        except WgError as exc:
            errors.append(str(exc))
        self._ruleset = None
        self.psk_path.unlink(missing_ok=True)
        return errors

    async def _delete_link(self) -> None:
        if await self.link_kind() is not None:
            await self._runner.run(["ip", "link", "del", "dev", self.interface])
            log.info("deleted %s", self.interface)
        # Deleting the TUN makes wireguard-go exit, which removes its socket. A socket left
        # by a killed wireguard-go would make `wg` believe the interface still exists.
        sock = self._socket_dir / f"{self.interface}.sock"
        if sock.exists() and await self.link_kind() is None:
            sock.unlink(missing_ok=True)

"""What the agent relies on from a MeshDevice, run against every implementation.

tests/kubespan/test_device_contract.py runs it on FakeDevice and on the real Device (over
the argv-level FakeKernel), so the fake the agent tests use cannot drift from the Device.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest

from kubespan.device import MeshDevice
from kubespan.identity import generate_private_key, public_key_of
from kubespan.plan import MeshSpec, WgPeer, plan
from membership.record import EndpointAddr

IFACE = "kstest0"
PREFIX = IPv6Network("fd7f:175a:b97c:5602::/64")
ADDRESS = IPv6Address("fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169")
PSK = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PEER = "UOIiJGUQAzBGUBZzsk4ZUe9QE2rS8b4+fsRIWvciBxs="
OTHER = "vELr1l2BvnPx7CiMi4g4Wp6rWlEhvR2vZF9Pe3W7CRE="
EP1 = EndpointAddr(ip_address("10.99.0.12"), 51820)
EP2 = EndpointAddr(ip_address("10.98.0.12"), 51820)


def desired(key_file: Path, *peers: WgPeer) -> MeshSpec:
    return MeshSpec(
        interface=IFACE,
        public_key=public_key_of(key_file.read_text().strip()),
        private_key_file=str(key_file),
        listen_port=51820,
        fwmark=0x20,
        mtu=1420,
        peers=peers,
    )


def peer(key: str, endpoint: EndpointAddr | None, *nets: str) -> WgPeer:
    return WgPeer(
        public_key=key,
        endpoint=endpoint,
        allowed_ips=tuple(ip_network(n) for n in nets),
        persistent_keepalive=25,
        preshared_key=PSK,
    )


class MeshDeviceContract:
    @pytest.fixture
    def device(self, tmp_path: Path) -> MeshDevice:
        raise NotImplementedError

    @pytest.fixture
    def key_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "wireguard.key"
        path.write_text(generate_private_key() + "\n")
        return path

    @pytest.mark.anyio
    async def test_read_host(self, device: MeshDevice) -> None:
        host = await device.read_host()
        assert [link.name for link in host.links if link.link_type == "ether"] == ["eth0"]
        assert [str(a.address) for a in host.addresses] == ["10.99.0.11"]

    @pytest.mark.anyio
    async def test_bring_up_then_read(self, device: MeshDevice) -> None:
        assert await device.read() is None, "no link yet"
        await device.bring_up(ADDRESS, PREFIX, PSK)
        state = await device.read()
        assert state is not None and state.peers == () and state.public_key is None
        assert device.backend in ("kernel", "wireguard-go")

    @pytest.mark.anyio
    async def test_applied_plan_converges(self, device: MeshDevice, key_file: Path) -> None:
        await device.bring_up(ADDRESS, PREFIX, PSK)
        want = desired(key_file, peer(PEER, EP1, "10.99.0.12/32"), peer(OTHER, None, "10.0.0.0/8"))
        await device.apply(plan(await device.read(), want))
        state = await device.read()
        assert state is not None
        assert plan(state, want) == [], "what was applied reads back as applied"
        assert (state.public_key, state.listen_port, state.fwmark) == (want.public_key, 51820, 32)
        by_key = {p.public_key: p for p in state.peers}
        assert by_key[PEER].endpoint == EP1 and by_key[OTHER].endpoint is None
        assert by_key[PEER].preshared_key == PSK and by_key[PEER].persistent_keepalive == 25
        assert by_key[PEER].allowed_ips == (ip_network("10.99.0.12/32"),)

    @pytest.mark.anyio
    async def test_update_keeps_a_roamed_endpoint_and_remove(
        self, device: MeshDevice, key_file: Path
    ) -> None:
        await device.bring_up(ADDRESS, PREFIX, PSK)
        await device.apply(
            plan(await device.read(), desired(key_file, peer(PEER, EP1, "10.1.0.0/16")))
        )
        # endpoint None: keep whatever WireGuard has; allowed IPs are replaced.
        want = desired(key_file, peer(PEER, None, "10.2.0.0/16"))
        await device.apply(plan(await device.read(), want))
        state = await device.read()
        assert state is not None
        [only] = state.peers
        assert (only.endpoint, only.allowed_ips) == (EP1, (ip_network("10.2.0.0/16"),))
        await device.apply(plan(state, desired(key_file, peer(PEER, EP2, "10.2.0.0/16"))))
        state = await device.read()
        assert state is not None and state.peers[0].endpoint == EP2
        await device.apply(plan(state, desired(key_file)))
        state = await device.read()
        assert state is not None and state.peers == ()

    @pytest.mark.anyio
    async def test_bring_up_again_adopts_the_link(self, device: MeshDevice, key_file: Path) -> None:
        await device.bring_up(ADDRESS, PREFIX, PSK)
        want = desired(key_file, peer(PEER, EP1, "10.99.0.12/32"))
        await device.apply(plan(await device.read(), want))
        await device.bring_up(ADDRESS, PREFIX, PSK)
        assert plan(await device.read(), want) == [], "a restart keeps link and peers"

    @pytest.mark.anyio
    async def test_routed_set_changes_only_when_it_differs(self, device: MeshDevice) -> None:
        await device.bring_up(ADDRESS, PREFIX, PSK)
        nets = [ip_network("10.99.0.12/32")]
        assert await device.set_routed(nets, PREFIX)
        assert not await device.set_routed(nets, PREFIX)
        assert await device.set_routed([*nets, ip_network("10.99.0.13/32")], PREFIX)

    @pytest.mark.anyio
    async def test_teardown_removes_the_link(self, device: MeshDevice, key_file: Path) -> None:
        await device.bring_up(ADDRESS, PREFIX, PSK)
        await device.apply(plan(await device.read(), desired(key_file, peer(PEER, EP1))))
        assert await device.teardown() == []
        assert await device.read() is None
        assert await device.teardown() == [], "idempotent"

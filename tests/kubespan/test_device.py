from __future__ import annotations

import stat
from ipaddress import IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest

from kubespan.device import Device, PeerOpsError, apply
from kubespan.plan import AddPeer, CreateLink, Op, RemovePeer, SetDevice, UpdatePeer
from kubespan.wg import SubprocessRunner, WgError
from membership.record import EndpointAddr
from tests.fakes import FakeRunner
from tests.kubespan.fake_kernel import FakeKernel

PREFIX = IPv6Network("fd7f:175a:b97c:5602::/64")
ADDRESS = IPv6Address("fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169")
PSK = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PEER = "UOIiJGUQAzBGUBZzsk4ZUe9QE2rS8b4+fsRIWvciBxs="
OTHER = "vELr1l2BvnPx7CiMi4g4Wp6rWlEhvR2vZF9Pe3W7CRE="
THIRD = "hB3KEWdfF8gTxGcvGdcrtQ+pgB7ceSVjhX13oVR9Hmc="


def make_device(tmp_path: Path, host: FakeKernel) -> tuple[Device, FakeRunner]:
    runner = host.install(FakeRunner())
    device = Device("kstest0", runner, state_dir=tmp_path, mtu=1420, socket_dir=tmp_path)
    return device, runner


@pytest.mark.anyio
async def test_bring_up_falls_back_to_wireguard_go(tmp_path: Path) -> None:
    host = FakeKernel(kernel_wireguard=False)
    device, runner = make_device(tmp_path, host)
    await device.bring_up(ADDRESS, PREFIX, PSK)
    assert device.backend == "wireguard-go"
    assert runner.commands("ip", "link", "add") == [
        ["ip", "link", "add", "dev", "kstest0", "type", "wireguard"]
    ]
    assert runner.commands("wireguard-go") == [["wireguard-go", "kstest0"]]
    assert ["ip", "link", "set", "dev", "kstest0", "mtu", "1420"] in runner.calls
    assert [
        "ip", "-6", "addr", "replace", f"{ADDRESS}/64", "dev", "kstest0", "nodad"
    ] in runner.calls  # fmt: skip
    assert ["ip", "link", "set", "dev", "kstest0", "up"] in runner.calls
    assert ["ip", "-4", "route", "replace", "default", "dev", "kstest0", "table", "180",
            "metric", "1", "mtu", "1420", "proto", "static"] in runner.calls  # fmt: skip
    assert host.rules == {"-4": 1, "-6": 1}
    psk = tmp_path / "preshared.key"
    assert psk.read_text() == PSK + "\n"
    assert stat.S_IMODE(psk.stat().st_mode) == 0o600
    # The secret never appears on a command line.
    assert not [c for c in runner.calls if PSK in " ".join(c)]


@pytest.mark.anyio
async def test_bring_up_prefers_kernel_and_is_idempotent(tmp_path: Path) -> None:
    host = FakeKernel(kernel_wireguard=True)
    device, runner = make_device(tmp_path, host)
    await device.bring_up(ADDRESS, PREFIX, PSK)
    await device.bring_up(ADDRESS, PREFIX, PSK)
    assert device.backend == "kernel"
    assert not runner.commands("wireguard-go")
    assert len(runner.commands("ip", "link", "add")) == 1, "the second bring-up adopts the link"
    assert host.rules == {"-4": 1, "-6": 1}, "rules are added once, not per bring-up"


@pytest.mark.anyio
async def test_bring_up_recreates_a_dead_userspace_link(tmp_path: Path) -> None:
    host = FakeKernel()
    device, runner = make_device(tmp_path, host)
    host.link, host.link_kind = "kstest0", "tun"
    runner.on("wg", "show", output=WgError(["wg", "show"], 1, "Unable to access interface"))
    await device.bring_up(ADDRESS, PREFIX, PSK)
    assert ["ip", "link", "del", "dev", "kstest0"] in runner.calls
    assert runner.commands("wireguard-go") == [["wireguard-go", "kstest0"]]


@pytest.mark.anyio
async def test_bring_up_refuses_a_foreign_link(tmp_path: Path) -> None:
    host = FakeKernel()
    device, _ = make_device(tmp_path, host)
    host.link, host.link_kind = "kstest0", "bridge"
    with pytest.raises(WgError, match="is a bridge link"):
        await device.bring_up(ADDRESS, PREFIX, PSK)


@pytest.mark.anyio
async def test_apply_runs_wg_set_with_secret_files(tmp_path: Path) -> None:
    host = FakeKernel(kernel_wireguard=True)
    device, runner = make_device(tmp_path, host)
    await device.bring_up(ADDRESS, PREFIX, PSK)
    key_file = tmp_path / "wireguard.key"
    key_file.write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
    endpoint = EndpointAddr(ip_address("10.99.0.12"), 51820)
    ops: list[Op] = [
        SetDevice("kstest0", private_key_file=str(key_file), listen_port=51820, fwmark=0x20),
        AddPeer(
            interface="kstest0",
            public_key=PEER,
            endpoint=endpoint,
            allowed_ips=(ip_network("10.99.0.12/32"),),
            persistent_keepalive=25,
            preshared_key=PSK,
        ),
    ]
    await device.apply(ops)
    assert runner.commands("wg", "set")[-1] == [
        "wg", "set", "kstest0", "peer", PEER, "preshared-key", str(tmp_path / "preshared.key"),
        "endpoint", "10.99.0.12:51820", "persistent-keepalive", "25",
        "allowed-ips", "10.99.0.12/32",
    ]  # fmt: skip
    assert host.peers[PEER].preshared_key == PSK
    assert (host.listen_port, host.fwmark) == (51820, 0x20)
    update = UpdatePeer(interface="kstest0", public_key=PEER, endpoint=None, allowed_ips=(),
                        persistent_keepalive=0, preshared_key=PSK)  # fmt: skip
    await device.apply([update, RemovePeer("kstest0", PEER)])
    assert PEER not in host.peers


@pytest.mark.anyio
async def test_apply_create_link_needs_the_device(tmp_path: Path) -> None:
    runner = FakeRunner()
    with pytest.raises(ValueError, match="CreateLink"):
        await apply([CreateLink("kstest0", 1420)], runner, psk_path=None)
    host = FakeKernel()
    device, runner = make_device(tmp_path, host)
    await device.apply([CreateLink("kstest0", 1420)])
    assert host.link == "kstest0"


@pytest.mark.anyio
async def test_apply_stops_at_a_device_failure(tmp_path: Path) -> None:
    runner = FakeRunner()
    runner.on("wg", "set", output=WgError(["wg", "set"], 1, "Name or service not known"))
    ops: list[Op] = [SetDevice("kstest0", listen_port=51820), RemovePeer("kstest0", PEER)]
    with pytest.raises(WgError, match="wg set: exit 1") as failed:
        await apply(ops, runner, psk_path=None)
    assert not isinstance(failed.value, PeerOpsError)
    assert len(runner.calls) == 1


@pytest.mark.anyio
async def test_apply_continues_past_failing_peers(tmp_path: Path) -> None:
    runner = FakeRunner()
    runner.on("wg", "set", output=WgError(["wg", "set"], 1, "Name or service not known"))
    ops = [RemovePeer("kstest0", PEER), RemovePeer("kstest0", OTHER)]
    with pytest.raises(PeerOpsError, match="2 peer") as failed:
        await apply(ops, runner, psk_path=None)
    assert set(failed.value.failed) == {PEER, OTHER}
    assert len(runner.calls) == 2


@pytest.mark.anyio
async def test_one_bad_peer_does_not_block_the_rest(tmp_path: Path) -> None:
    # Finding 10: a malformed key sorted first, `wg set` refused it and the pass stopped
    # there: 0 of 3 peers configured and nft never written, on every pass.
    host = FakeKernel(failing={OTHER: "Cannot allocate memory"})
    device, _ = make_device(tmp_path, host)
    await device.bring_up(ADDRESS, PREFIX, PSK)
    bad = "pk-broken"
    peers = [bad, PEER, OTHER, THIRD]
    ops: list[Op] = [
        AddPeer(
            interface="kstest0",
            public_key=key,
            endpoint=None,
            allowed_ips=(ip_network(f"10.0.0.{n}/32"),),
            persistent_keepalive=25,
            preshared_key=PSK,
        )
        for n, key in enumerate(sorted(peers))
    ]
    with pytest.raises(PeerOpsError) as failed:
        await device.apply(ops)
    assert set(failed.value.failed) == {bad, OTHER}
    assert "Key is not the correct length" in str(failed.value)
    assert set(host.peers) == {PEER, THIRD}


@pytest.mark.anyio
async def test_routed_set_only_rewritten_on_change(tmp_path: Path) -> None:
    host = FakeKernel()
    device, runner = make_device(tmp_path, host)
    nets = [ip_network("10.99.0.12/32"), ip_network(f"{ADDRESS}/128")]
    assert await device.set_routed(nets, PREFIX)
    assert not await device.set_routed(nets, PREFIX)
    assert await device.set_routed([*nets, ip_network("10.99.0.13/32")], PREFIX)
    assert len(runner.commands("nft")) == 2
    assert runner.stdins[-1] is not None and b"10.99.0.12-10.99.0.13" not in runner.stdins[-1]
    assert host.nft is not None and "ip daddr { 10.99.0.12/31 }" in host.nft


@pytest.mark.anyio
async def test_teardown_removes_everything_and_tolerates_absence(tmp_path: Path) -> None:
    host = FakeKernel()
    device, _ = make_device(tmp_path, host)
    await device.bring_up(ADDRESS, PREFIX, PSK)
    host.rules["-4"] = 2  # a duplicate from an older run
    stale = tmp_path / "kstest0.sock"
    stale.touch()
    assert await device.teardown() == []
    assert host.link is None
    assert host.rules == {"-4": 0, "-6": 0}
    assert host.nft == "add table inet kubespan\ndelete table inet kubespan\n"
    assert not (tmp_path / "preshared.key").exists()
    assert not stale.exists()
    assert await device.teardown() == [], "idempotent"


@pytest.mark.anyio
async def test_read_host_parses_links_and_addresses(tmp_path: Path) -> None:
    host = FakeKernel(addresses=[("eth0", "10.99.0.11", 24), ("eth0", "2001:db8::2", 64)])
    device, runner = make_device(tmp_path, host)
    read = await device.read_host()
    assert runner.calls == [["ip", "-j", "-d", "addr", "show"]]
    assert [(link.name, link.mac) for link in read.links] == [
        ("lo", "00:00:00:00:00:00"),
        ("eth0", host.mac),
    ]
    assert [(a.link, str(a.address), a.prefixlen) for a in read.addresses] == [
        ("eth0", "10.99.0.11", 24),
        ("eth0", "2001:db8::2", 64),
    ]
    runner.on("ip", "-j", "-d", "addr", "show", output=b"not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        await device.read_host()


def test_invalid_interface_names() -> None:
    for name in ("", "a" * 16, "a/b", " x"):
        with pytest.raises(ValueError, match="interface name"):
            Device(name, FakeRunner(), state_dir=Path("/tmp"), mtu=1420)


@pytest.mark.anyio
async def test_subprocess_runner_runs_and_maps_errors() -> None:
    runner = SubprocessRunner()
    assert await runner.run(["cat"], stdin=b"secret via stdin") == b"secret via stdin"
    assert runner.resolve("cat").startswith("/")
    with pytest.raises(WgError) as failed:
        await runner.run(["sh", "-c", "echo nope >&2; exit 3"])
    assert (failed.value.command, failed.value.rc, failed.value.stderr) == (("sh", "-c"), 3, "nope")
    assert str(failed.value) == "sh -c: exit 3: nope"
    with pytest.raises(WgError) as missing:
        await runner.run(["definitely-not-a-binary-kubespan", "x"])
    assert missing.value.rc == 127
    slow = SubprocessRunner(timeout=0.2)
    with pytest.raises(WgError, match="timed out"):
        await slow.run(["sleep", "5"])
    with pytest.raises(ValueError, match="empty"):
        await runner.run([])

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import IPv6Address

import pytest

from kubespan.mesh_health import format_mesh, local_health, mesh_matrix, same_view
from kubespan.peer_state import ConnectionState, Durations, PeerStatus, PeerTrack
from kubespan.peers import PeerSpec
from kubespan.plan import MeshSpec
from kubespan.reconcile import PassSettings, observe_interval, to_poke
from membership.health import HealthState, MeshHealth, PeerHealth, key_id
from membership.record import AffiliateRecord, DecodedAffiliate, KubeSpanInfo

NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = {n: base64.b64encode(bytes([i]) * 32).decode() for i, n in
        enumerate(["a", "b", "c", "d"], start=1)}  # fmt: skip
UP, DOWN, UNKNOWN = ConnectionState.UP, ConnectionState.DOWN, ConnectionState.UNKNOWN


def _spec(name: str) -> PeerSpec:
    return PeerSpec(
        public_key=KEYS[name], label=name, node_id=name, address=None, allowed_ips=(), endpoints=()
    )


def _node(name: str, *views: tuple[str, HealthState]) -> DecodedAffiliate:
    health = MeshHealth(
        observed_at=0,
        peers=tuple(PeerHealth(key_id=key_id(KEYS[p]), state=s) for p, s in views),
    )
    record = AffiliateRecord(
        node_id=name,
        nodename=name,
        kubespan=KubeSpanInfo(public_key=KEYS[name]),
        mesh_health=health if views else None,
    )
    return DecodedAffiliate(record=record)


def test_local_health_leaves_out_peers_not_judged_yet() -> None:
    tracks = {
        KEYS["b"]: PeerTrack(shown=UP, handshake=NOW - timedelta(seconds=30),
                             rx_grew_at=NOW - timedelta(seconds=2)),
        KEYS["c"]: PeerTrack(shown=DOWN, handshake=NOW - timedelta(seconds=200),
                             rx_grew_at=NOW - timedelta(seconds=60)),
        KEYS["d"]: PeerTrack(shown=UNKNOWN),
    }  # fmt: skip
    health = local_health([_spec("b"), _spec("c"), _spec("d")], tracks, NOW, timedelta(seconds=55))
    assert health == MeshHealth(
        observed_at=int(NOW.timestamp()),
        peers=(
            PeerHealth(key_id=b"\x02" * 4, state=HealthState.UP, receiving=True, session=True,
                       handshake_age=30),
            PeerHealth(key_id=b"\x03" * 4, state=HealthState.DOWN, handshake_age=200),
        ),
    )  # fmt: skip
    # Ages and time alone are no reason to republish; a state change is.
    later = MeshHealth(observed_at=1, peers=tuple(
        PeerHealth(key_id=p.key_id, state=p.state, receiving=p.receiving, session=p.session)
        for p in health.peers))  # fmt: skip
    assert same_view(health, later)
    assert not same_view(health, MeshHealth(observed_at=0, peers=health.peers[:1]))
    assert same_view(None, MeshHealth(observed_at=5))


def test_a_bad_key_is_not_judged() -> None:
    spec = PeerSpec(
        public_key="bad", label="x", node_id="x", address=None, allowed_ips=(), endpoints=()
    )
    health = local_health([spec], {"bad": PeerTrack(shown=UP)}, NOW, timedelta(seconds=55))
    assert health.peers == ()


def _settings(keepalive: int = 25) -> PassSettings:
    return PassSettings(
        device=MeshSpec(
            interface="ks0",
            public_key="k",
            private_key_file="/k",
            listen_port=1,
            fwmark=0,
            mtu=1420,
        ),
        durations=Durations(),  # endpoint timeout 6 s, peer down 45 s
        keepalive=keepalive,
        psk="",
        force_routing=True,
    )


def _up(quiet: float) -> PeerTrack:
    status = PeerStatus(last_handshake=NOW - timedelta(seconds=quiet), state=UP)
    return PeerTrack(status=status, shown=UP)


@pytest.mark.parametrize(
    ("tracks", "keepalive", "expected"),
    [
        ({}, 25, 3),
        ({"a": _up(5)}, 25, 3),  # up, its next keepalive 20 s away
        ({"a": _up(5), "b": PeerTrack()}, 25, 1),  # a peer not judged yet
        ({"a": PeerTrack(shown=DOWN)}, 25, 1),  # down: it may come back
        ({"a": _up(21.9)}, 25, 3),
        ({"a": _up(22)}, 25, 1),  # due a keepalive within a slow interval
        ({"a": _up(50)}, 25, 1),  # overdue: about to be judged down
        ({"a": _up(50)}, 0, 3),  # no keepalives: nothing is due
        # An endpoint on trial is read again the moment its 6 s run out.
        ({"a": PeerTrack(status=PeerStatus(last_endpoint_change=NOW - timedelta(seconds=5.5)))},
         25, 0.5),
        ({"a": PeerTrack(status=PeerStatus(last_endpoint_change=NOW - timedelta(seconds=2)))},
         25, 1),
        ({"a": PeerTrack(status=PeerStatus(last_endpoint_change=NOW - timedelta(seconds=7)))},
         25, 1),
    ],
)  # fmt: skip
def test_observe_interval(tracks: dict[str, PeerTrack], keepalive: int, expected: float) -> None:
    assert observe_interval(tracks, NOW, _settings(keepalive)) == pytest.approx(expected)


def test_matrix_marks_one_way_failures_and_silent_nodes() -> None:
    me = _node("a")
    mine = MeshHealth(
        observed_at=0,
        peers=(
            PeerHealth(key_id=key_id(KEYS["b"]), state=HealthState.UP),
            PeerHealth(key_id=key_id(KEYS["c"]), state=HealthState.DOWN),
            PeerHealth(key_id=b"zzzz", state=HealthState.UP),  # a peer that left
        ),
    )
    b = _node("b", ("a", HealthState.UP), ("c", HealthState.UP))
    c = _node("c", ("a", HealthState.UP), ("b", HealthState.UP))
    d = _node("d")  # publishes no view (a Talos node)
    talos = DecodedAffiliate(record=AffiliateRecord(node_id="t"))  # no mesh key
    doc = mesh_matrix(me, mine, [d, c, b, talos])
    assert [(n["name"], n["self"], n["reports"]) for n in doc["nodes"]] == [
        ("a", True, True), ("b", False, True), ("c", False, True), ("d", False, False),
    ]  # fmt: skip
    links = {(x["from"], x["to"]): (x["state"], x["one_way"]) for x in doc["links"]}
    assert links == {
        ("a", "b"): ("up", False),
        ("b", "a"): ("up", False),
        ("a", "c"): ("down", True),
        ("c", "a"): ("up", True),
        ("b", "c"): ("up", False),
        ("c", "b"): ("up", False),
    }
    text = format_mesh(doc).splitlines()
    assert text[0].split() == ["a", "b", "c", "d"]
    assert text[1].split() == ["a", "\\", "up", "DOWN!", "-"]
    assert text[3].split() == ["c", "up!", "up", "\\", "-"]
    assert text[4].split() == ["d", "-", "-", "-", "\\"]
    assert text[-1] == "4 nodes, 1 pairs not up, 1 one-way: a-c"


def test_an_agent_without_a_record_has_an_empty_matrix() -> None:
    assert format_mesh({"nodes": [], "links": []}).splitlines()[-1] == (
        "0 nodes, 0 pairs not up, 0 one-way"
    )


def test_down_peers_and_quiet_up_peers_are_poked() -> None:
    def addressed(name: str) -> PeerSpec:
        return replace(_spec(name), address=IPv6Address(f"fd00::{ord(name)}"))

    specs = [addressed("a"), addressed("b"), addressed("c"), addressed("d"), _spec("a")]
    tracks = {
        KEYS["a"]: PeerTrack(shown=DOWN),
        KEYS["b"]: _up(30),  # a keepalive (25 s) and 5 s more: prove it is alive
        KEYS["c"]: _up(29),
        KEYS["d"]: PeerTrack(),  # unknown: its endpoint is on trial
    }
    poked = to_poke(specs, tracks, NOW, keepalive=25)
    assert poked == [IPv6Address("fd00::97"), IPv6Address("fd00::98")]
    assert to_poke(specs, tracks, NOW, keepalive=0) == [IPv6Address("fd00::97")]

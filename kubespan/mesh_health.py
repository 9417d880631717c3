"""Mesh health: this node's view of its peers for its record, and the N x N matrix of all views.

Each agent publishes what it sees (membership.health, Affiliate field 1000) and reads what the
others publish, so `kubespan status --mesh` on any node shows who reaches whom. Pure: the
agent hands in its tracks, the records and the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kubespan.peer_state import ConnectionState, PeerTrack
from kubespan.peers import PeerSpec
from membership.health import HealthState, MeshHealth, PeerHealth, key_id
from membership.record import DecodedAffiliate

SESSION_LIFETIME = timedelta(seconds=180)
"""WireGuard's REJECT_AFTER_TIME: a handshake younger than this is a live session."""

_STATES = {
    ConnectionState.UNKNOWN: HealthState.UNKNOWN,
    ConnectionState.UP: HealthState.UP,
    ConnectionState.DOWN: HealthState.DOWN,
}


def local_health(
    specs: Sequence[PeerSpec],
    tracks: Mapping[str, PeerTrack],
    now: datetime,
    peer_down: timedelta,
) -> MeshHealth:
    """This node's view of its desired peers at `now`, for its record.

    Peers not judged yet (`unknown`: just added, an endpoint on trial) are left out: they
    say nothing, and every peer joining a large mesh would otherwise cost a publish.
    """
    peers = []
    for spec in specs:
        track = tracks.get(spec.public_key, PeerTrack())
        if track.shown is ConnectionState.UNKNOWN:
            continue
        try:
            ident = key_id(spec.public_key)
        except ValueError:
            continue  # a record with a key WireGuard would refuse: not a peer we can judge
        grew = track.rx_grew_at
        peers.append(
            PeerHealth(
                key_id=ident,
                state=_STATES[track.shown],
                receiving=grew is not None and now - grew < peer_down,
                session=track.handshake is not None and now - track.handshake < SESSION_LIFETIME,
                handshake_age=(
                    None
                    if track.handshake is None
                    else int((now - track.handshake).total_seconds())
                ),
            )
        )
    return MeshHealth(observed_at=int(now.timestamp()), peers=tuple(peers))


def same_view(a: MeshHealth | None, b: MeshHealth | None) -> bool:
    """True when two views differ at most in time and handshake ages (nothing to republish).

    No view and an empty one are the same: a record without the field says as much.
    """
    a = a or MeshHealth(observed_at=0)
    b = b or MeshHealth(observed_at=0)
    strip = [(p.key_id, p.state, p.receiving, p.session) for p in a.peers]
    return a.omitted == b.omitted and strip == [
        (p.key_id, p.state, p.receiving, p.session) for p in b.peers
    ]


def _name(affiliate: DecodedAffiliate) -> str:
    record = affiliate.record
    return record.nodename or record.hostname or record.node_id


def mesh_matrix(
    me: DecodedAffiliate, my_view: MeshHealth, others: Iterable[DecodedAffiliate]
) -> dict[str, Any]:
    """Every node's view of every other node, JSON-ready: `nodes` and `links`.

    A link is one observer's view of one peer; `one_way` marks a pair whose two ends
    disagree (one sees the other up, the other does not), the sign of a path open in one
    direction only. Nodes without a mesh key are left out; a node that publishes no view
    (a Talos node, an older agent) has no links of its own.
    """
    nodes = [a for a in [me, *others] if a.record.kubespan is not None]
    nodes.sort(key=_name)
    by_id: dict[bytes, str] = {}
    for node in nodes:
        assert node.record.kubespan is not None
        try:
            by_id[key_id(node.record.kubespan.public_key)] = _name(node)
        except ValueError:
            continue
    views: dict[str, MeshHealth | None] = {
        _name(n): my_view if n is me else n.record.mesh_health for n in nodes
    }
    links: dict[tuple[str, str], dict[str, Any]] = {}
    for observer, view in views.items():
        for peer in view.peers if view else ():
            name = by_id.get(peer.key_id)
            if name is None or name == observer:
                continue  # a peer that left, or a key prefix we cannot place
            links[observer, name] = {
                "from": observer,
                "to": name,
                "state": peer.state.name.lower(),
                "receiving": peer.receiving,
                "session": peer.session,
                "handshake_age": peer.handshake_age,
            }
    for (a, b), link in links.items():
        back = links.get((b, a))
        up = {link["state"] == "up", back is not None and back["state"] == "up"}
        link["one_way"] = back is not None and up == {True, False}
    return {
        "nodes": [
            {
                "name": _name(n),
                "node_id": n.record.node_id,
                "self": n is me,
                "reports": views[_name(n)] is not None,
                "observed_at": (v.observed_at if (v := views[_name(n)]) else None),
                "omitted": v.omitted if v else 0,
            }
            for n in nodes
        ],
        "links": sorted(links.values(), key=lambda link: (link["from"], link["to"])),
    }


_CELLS = {"up": "up", "down": "DOWN", "unknown": "?"}


def format_mesh(doc: Mapping[str, Any]) -> str:
    """The `kubespan status --mesh` matrix: row = observer, column = peer."""
    names = [str(n["name"]) for n in doc["nodes"]]
    links = {(str(link["from"]), str(link["to"])): link for link in doc["links"]}
    width = max([len(n) for n in names] + [4]) + 1
    lines = [" " * width + "".join(n.rjust(width + 1) for n in names)]
    for row in names:
        cells = []
        for col in names:
            link = links.get((row, col))
            cell = "\\" if row == col else "-" if link is None else _CELLS[str(link["state"])]
            cells.append((cell + ("!" if link and link["one_way"] else "")).rjust(width + 1))
        lines.append(row.ljust(width) + "".join(cells))
    down = sorted({tuple(sorted(k)) for k, link in links.items() if link["state"] != "up"}, key=str)
    one_way = sum(1 for link in links.values() if link["one_way"]) // 2
    lines.append("")
    lines.append(
        "row = observer, column = peer; DOWN down, ? not judged yet, - no report, "
        "! the two ends disagree (one-way)"
    )
    summary = f"{len(names)} nodes, {len(down)} pairs not up, {one_way} one-way"
    if down:
        summary += ": " + ", ".join(f"{a}-{b}" for a, b in down)
    lines.append(summary)
    return "\n".join(lines)

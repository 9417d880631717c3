"""What `kubespan status` shows: the agent's state as JSON, and the CLI's tables.

The JSON documents are built here from the agent's parts (identity, own record, peer
specs and tracks, sessions); status_api.py serves them and the CLI renders them as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from ipaddress import IPv6Address
from typing import Any, Protocol

from kubespan.device import MeshDevice
from kubespan.identity import Identity
from kubespan.mesh_health import mesh_matrix
from kubespan.own_record import LocalRecord, OwnRecord
from kubespan.peer_state import PeerTrack
from kubespan.peers import PeerSpec, Refused
from kubespan.session import Session
from membership.health import MeshHealth
from membership.members import members as cluster_members
from membership.record import DecodedAffiliate

# -- JSON documents ----------------------------------------------------------------------


def self_status(
    *,
    identity: Identity | None,
    address: IPv6Address | None,
    interface: str,
    backend: str | None,
    local: LocalRecord | None,
    passes: int,
    last_error: str | None,
) -> dict[str, object]:
    """This node: identity, mesh address, link, published endpoints, loop health."""
    return {
        "node_id": identity.node_id if identity else None,
        "public_key": identity.public_key if identity else None,
        "address": str(address) if address else None,
        "interface": interface,
        "backend": backend,
        "nodename": local.record.nodename if local else None,
        "endpoints": [str(e) for e in local.endpoints] if local else [],
        "reconcile_passes": passes,
        "last_error": last_error,
    }


def peers_status(
    specs: Sequence[PeerSpec], tracks: Mapping[str, PeerTrack]
) -> list[dict[str, object]]:
    """One entry per desired peer, in spec order, with its state as last observed."""
    out: list[dict[str, object]] = []
    for spec in specs:
        track = tracks.get(spec.public_key, PeerTrack())
        status = track.status
        out.append(
            {
                "label": spec.label,
                "node_id": spec.node_id,
                "public_key": spec.public_key,
                "endpoint": str(status.endpoint) if status.endpoint else None,
                "state": str(track.shown),
                "last_handshake": track.handshake.isoformat() if track.handshake else None,
                "rx": status.rx,
                "tx": status.tx,
                "allowed_ips": [str(n) for n in spec.allowed_ips],
                "endpoints": [str(e) for e in spec.endpoints],
                "warnings": list(spec.warnings),
            }
        )
    return out


def refused_status(refused: Iterable[Refused]) -> list[dict[str, object]]:
    """Records not made peers (a broken or unusable key), and why."""
    return [{"node_id": r.node_id, "label": r.label, "reason": r.reason} for r in refused]


def members_status(
    affiliates: Iterable[DecodedAffiliate], local: LocalRecord | None
) -> list[dict[str, object]]:
    """The cluster's members as the discovery services show them, this node included."""
    everyone = list(affiliates)
    if local is not None:
        everyone.append(DecodedAffiliate(record=local.record))
    return [
        {
            "nodename": m.nodename,
            "node_id": m.node_id,
            "hostname": m.hostname,
            "machine_type": m.machine_type,
            "operating_system": m.operating_system,
            "addresses": [str(a) for a in m.addresses],
        }
        for m in cluster_members(everyone)
    ]


class AgentParts(Protocol):
    """The parts of a running agent that the status documents are read from."""

    identity: Identity | None
    address: IPv6Address | None
    interface: str
    device: MeshDevice
    own: OwnRecord | None
    specs: list[PeerSpec]
    refused: tuple[Refused, ...]
    tracks: dict[str, PeerTrack]
    sessions: list[Session]
    passes: int
    last_error: str | None

    def merged(self) -> dict[str, DecodedAffiliate]: ...
    def mesh_view(self) -> MeshHealth: ...
    async def leave(self) -> dict[str, object]: ...


class AgentStatus:
    """The status API's source (status_api.StatusSource) for one agent."""

    def __init__(self, agent: AgentParts) -> None:
        self._agent = agent

    def status(self) -> dict[str, object]:
        """Everything `kubespan status` shows, JSON-ready."""
        return {
            "self": self.self_status(),
            "peers": self.peers_status(),
            "members": self.members_status(),
            "refused": refused_status(self._agent.refused),
            "sessions": [s.status() for s in self._agent.sessions],
        }

    def self_status(self) -> dict[str, object]:
        agent = self._agent
        return self_status(
            identity=agent.identity,
            address=agent.address,
            interface=agent.interface,
            backend=agent.device.backend,
            local=agent.own.local if agent.own else None,
            passes=agent.passes,
            last_error=agent.last_error,
        )

    def peers_status(self) -> list[dict[str, object]]:
        return peers_status(self._agent.specs, self._agent.tracks)

    def members_status(self) -> list[dict[str, object]]:
        local = self._agent.own.local if self._agent.own else None
        return members_status(self._agent.merged().values(), local)

    def mesh_status(self) -> dict[str, object]:
        """Every node's view of its peers (ours live, the others' from their records)."""
        own = self._agent.own
        if own is None or own.local is None:
            return {"nodes": [], "links": []}
        me = DecodedAffiliate(record=own.local.record)
        return mesh_matrix(me, self._agent.mesh_view(), self._agent.merged().values())

    async def leave(self) -> dict[str, object]:
        return await self._agent.leave()


# -- text for the CLI -------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]  # fmt: skip
    return "\n".join(lines)


def _bytes(value: object) -> str:
    size = float(value) if isinstance(value, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns


def _ago(value: object, now: datetime) -> str:
    if not isinstance(value, str):
        return "never"
    seconds = int((now - datetime.fromisoformat(value)).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def format_status(status: Mapping[str, Any], now: datetime | None = None) -> str:
    """The `kubespan status` table (peers), then this node and its discovery sessions."""
    now = now or datetime.now(UTC)
    rows = [
        [
            str(p["label"]),
            str(p["public_key"]),
            str(p["endpoint"] or "-"),
            str(p["state"]),
            _ago(p["last_handshake"], now),
            _bytes(p["rx"]),
            _bytes(p["tx"]),
        ]
        for p in sorted(status["peers"], key=lambda p: str(p["label"]))
    ]
    header = ["LABEL", "PUBLIC-KEY", "ENDPOINT", "STATE", "HANDSHAKE", "RX", "TX"]
    me = status["self"]
    lines = [
        _table(header, rows),
        "",
        f"node {me['nodename']} ({me['node_id']}) {me['address']} key {me['public_key']}"
        f" on {me['interface']} ({me['backend']})",
    ]
    for r in status.get("refused", []):
        lines.append(f"refused peer {r['label']} ({r['node_id']}): {r['reason']}")
    for s in status["sessions"]:
        state = "connected" if s["connected"] else f"disconnected ({s['last_error'] or '-'})"
        lines.append(
            f"discovery {s['endpoint']}: {state}, {s['affiliates']} affiliates, "
            f"{s['undecryptable']} undecryptable"
        )
    return "\n".join(lines)


def format_members(members: Sequence[Mapping[str, Any]]) -> str:
    """The `kubespan members` table."""
    header = ["NODENAME", "NODE-ID", "HOSTNAME", "MACHINE-TYPE", "OS", "ADDRESSES"]
    rows = [
        [
            str(m["nodename"]),
            str(m["node_id"]),
            str(m["hostname"]),
            str(m["machine_type"]),
            str(m["operating_system"]),
            ",".join(m["addresses"]) or "-",
        ]
        for m in members
    ]
    return _table(header, rows)

from __future__ import annotations

from datetime import UTC, datetime

from kubespan.status import format_members, format_status

STATUS: dict[str, object] = {
    "self": {
        "node_id": "abc",
        "public_key": "PK=",
        "address": "fd00::1",
        "interface": "kubespan",
        "backend": "kernel",
        "nodename": "n1",
    },
    "peers": [
        {
            "label": "n2",
            "public_key": "UOIiJGUQAzBGUBZzsk4ZUe9QE2rS8b4+fsRIWvciBxs=",
            "endpoint": "10.99.0.12:51820",
            "state": "up",
            "last_handshake": "2026-01-01T00:00:00+00:00",
            "rx": 2048,
            "tx": 100,
        },
        {
            "label": "n3",
            "public_key": "vELr1l2BvnPx7CiMi4g4Wp6rWlEhvR2vZF9Pe3W7CRE=",
            "endpoint": None,
            "state": "unknown",
            "last_handshake": None,
            "rx": 0,
            "tx": 0,
        },
    ],
    "members": [],
    "sessions": [
        {
            "endpoint": "http://d:3001",
            "connected": False,
            "last_error": "refused",
            "affiliates": 2,
            "undecryptable": 1,
        }
    ],
}


class FakeSource:
    def __init__(self) -> None:
        self.left = 0

    def status(self) -> dict[str, object]:
        return STATUS

    def self_status(self) -> dict[str, object]:
        return {"node_id": "abc"}

    def peers_status(self) -> list[dict[str, object]]:
        return []

    def members_status(self) -> list[dict[str, object]]:
        return [{"nodename": "n1"}]

    def mesh_status(self) -> dict[str, object]:
        return {"nodes": [{"name": "n1"}], "links": []}

    async def leave(self) -> dict[str, object]:
        self.left += 1
        return {"deleted": ["http://d:3001"], "errors": {}}


def test_format_status_table() -> None:
    now = datetime(2026, 1, 1, 0, 0, 42, tzinfo=UTC)
    text = format_status(STATUS, now)
    lines = text.splitlines()
    assert lines[0].split() == ["LABEL", "PUBLIC-KEY", "ENDPOINT", "STATE", "HANDSHAKE", "RX", "TX"]
    assert lines[1].split() == [
        "n2", "UOIiJGUQAzBGUBZzsk4ZUe9QE2rS8b4+fsRIWvciBxs=", "10.99.0.12:51820", "up",
        "42s", "ago", "2.0", "KiB", "100", "B",
    ]  # fmt: skip
    assert lines[2].split()[2:5] == ["-", "unknown", "never"]
    assert "discovery http://d:3001: disconnected (refused), 2 affiliates, 1 undecryptable" in text


def test_format_members_table() -> None:
    text = format_members(
        [
            {
                "nodename": "n1",
                "node_id": "abc",
                "hostname": "n1.lan",
                "machine_type": "worker",
                "operating_system": "Linux",
                "addresses": ["10.0.0.1", "fd00::1"],
            }
        ]
    )
    header, row = text.splitlines()
    assert header.split() == ["NODENAME", "NODE-ID", "HOSTNAME", "MACHINE-TYPE", "OS", "ADDRESSES"]
    assert row.split() == ["n1", "abc", "n1.lan", "worker", "Linux", "10.0.0.1,fd00::1"]

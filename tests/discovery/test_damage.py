"""Damaged state is detected and never served: a flipped bit in the snapshot or in an event,
or a missing event, ends the process at start-up with one clear line and exit status 1 (a
supervisor then alerts or restores) instead of loading different state, or hanging."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.process import ServiceProcess, free_port

pytestmark = pytest.mark.slow


def _written(db: Path, *, snapshot: bool) -> None:
    """A service that wrote 20 affiliates, then stopped cleanly (final snapshot) or was
    killed (everything only in the log)."""
    service = ServiceProcess(f"sqlite:///{db}", extra=["--snapshot-interval", "3600"]).start()
    with httpx.Client(base_url=service.url, timeout=10) as http:
        for i in range(20):
            body = {"data": "c2VhbGVk", "endpoints": ["ZW5k"], "ttl": 600}
            assert http.put(f"/v1/clusters/c/affiliates/a{i}", json=body).status_code == 200
    if snapshot:
        assert service.stop() == 0
    else:
        service.kill()


def _start(db: Path) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "discovery",
        "--storage", f"sqlite:///{db}",
        "--http-addr", f"127.0.0.1:{free_port()}",
        "--grpc-addr", "", "--metrics-addr", "",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _flip_snapshot_bit(conn: sqlite3.Connection) -> None:
    (blob,) = conn.execute("SELECT blob FROM snapshot").fetchone()
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0x04
    conn.execute("UPDATE snapshot SET blob = ?", (bytes(damaged),))


def _flip_event_byte(conn: sqlite3.Connection) -> None:
    (data,) = conn.execute("SELECT data FROM events WHERE revision = 10").fetchone()
    damaged = bytearray(data)
    damaged[-3] ^= 0x01  # a byte of the expiry: still a valid payload, a different time
    conn.execute("UPDATE events SET data = ? WHERE revision = 10", (bytes(damaged),))


def _delete_event(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM events WHERE revision = 10")


@pytest.mark.parametrize(
    ("snapshot", "damage", "expected"),
    [
        (True, _flip_snapshot_bit, "damaged snapshot"),
        (False, _flip_event_byte, "checksum"),
        (False, _delete_event, "revision 10 is missing"),
    ],
    ids=["snapshot-bit", "event-byte", "missing-event"],
)
def test_damage_ends_the_start_with_one_clear_line(
    tmp_path: Path,
    snapshot: bool,
    damage: Callable[[sqlite3.Connection], None],
    expected: str,
) -> None:
    db = tmp_path / "events.db"
    _written(db, snapshot=snapshot)
    with sqlite3.connect(db) as conn:
        damage(conn)
    result = _start(db)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("discovery-service:")]
    assert "cannot load the stored state" in line and expected in line, line

"""The change signal between SQLite processes, on its own."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path

import pytest

from storage.sqlite_signal import ChangeSignal, signal_dir

pytestmark = pytest.mark.anyio


def send(path: str, *payloads: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for payload in payloads:
            sock.sendto(payload, path)


async def test_a_burst_is_one_call_with_the_newest_head(tmp_path: Path) -> None:
    db = str(tmp_path / "events.db")
    calls: list[tuple[int, bool]] = []
    signal = ChangeSignal.open(db, lambda head, overflowed: calls.append((head, overflowed)))
    try:
        (name,) = os.listdir(signal_dir(db))
        path = os.path.join(signal_dir(db), name)
        send(path, struct.pack("<Q", 5), struct.pack("<Q", 9), struct.pack("<Q", 7))
        await asyncio.sleep(0.05)
        assert calls == [(9, False)]
        send(path, b"not a head")  # not ours: ignored, but harmless
        await asyncio.sleep(0.05)
        assert calls[1:] == [(0, False)]
        # A full queue: the sender of a newer head may have got EAGAIN.
        send(path, *(struct.pack("<Q", head) for head in range(10, 20)))
        await asyncio.sleep(0.05)
        assert calls[2:] == [(19, True)]
    finally:
        signal.close()
        signal.close()  # idempotent
    signal.notify(1)  # closed: a no-op
    assert os.listdir(signal_dir(db)) == []


async def test_notify_skips_its_own_socket_and_strangers(tmp_path: Path) -> None:
    db = str(tmp_path / "events.db")
    heard: list[int] = []
    a = ChangeSignal.open(db, lambda head, _: heard.append(head))
    b = ChangeSignal.open(db, lambda head, _: heard.append(-head))
    Path(signal_dir(db), "README").write_text("not a socket of ours")
    try:
        a.notify(3)
        await asyncio.sleep(0.05)
        assert heard == [-3]
    finally:
        a.close()
        b.close()

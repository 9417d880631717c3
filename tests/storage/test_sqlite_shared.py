"""Several SQLite logs on one database file in one process: what separate processes rely on."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

import storage.sqlite as sqlite_module
from storage.errors import Conflict, StorageUnavailable
from storage.file_leadership import FileLockLeadership
from storage.file_lock import FileLock
from storage.sqlite import SqliteEventLog, writer_lock_path
from storage.sqlite_signal import signal_dir
from tests.storage.contract_helpers import ev, read_all

pytestmark = pytest.mark.anyio

OpenShared = Callable[[], Awaitable[SqliteEventLog]]


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "shared" / "events.db")


@pytest.fixture
async def open_shared(db_path: str) -> AsyncIterator[OpenShared]:
    """Opens logs on the one file, each with its own connections, writer thread and lock."""
    opened: list[SqliteEventLog] = []

    async def open_() -> SqliteEventLog:
        opened.append(await SqliteEventLog.open(db_path))
        return opened[-1]

    yield open_
    for log in opened:
        await log.aclose()


async def test_concurrent_appends_from_two_logs_are_gap_free(open_shared: OpenShared) -> None:
    a, b = await open_shared(), await open_shared()

    async def burst(log: SqliteEventLog, name: str) -> list[tuple[int, bytes]]:
        # Many tasks per log, so each log commits in groups while the other holds the lock.
        sent = [f"{name}{i}".encode() for i in range(300)]
        acks = await asyncio.gather(*(log.append(name, [ev(d.decode())]) for d in sent))
        return list(zip(acks, sent, strict=True))

    acked_a, acked_b = await asyncio.gather(burst(a, "a"), burst(b, "b"))
    acked = dict(acked_a + acked_b)
    assert sorted(acked) == list(range(1, 601))  # no revision given twice, none skipped
    for log in (a, b):
        got = await read_all(log)
        assert [e.revision for e in got] == list(range(1, 601))
        assert {e.revision: e.data for e in got} == acked
        assert await log.head() == 600
    # Each log's appends keep the order they were acknowledged in.
    for name, pairs in (("a", acked_a), ("b", acked_b)):
        mine = [e.data for e in await read_all(a) if e.stream == name]
        assert mine == [d for _, d in sorted(pairs)]


async def test_the_recent_cache_stays_right_when_another_log_commits(
    open_shared: OpenShared,
) -> None:
    a, b = await open_shared(), await open_shared()
    assert await a.append("a", [ev("1"), ev("2"), ev("3")]) == 3
    assert await b.append("b", [ev("4"), ev("5")]) == 5
    assert await a.append("a", [ev("6")]) == 6
    # a's cache held 1..3 and then only 6: reads around it must come from the database.
    assert [e.data for e in await a.read(0, 100)] == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert [e.data for e in await a.read(2, 100)] == [b"3", b"4", b"5", b"6"]
    assert [e.data for e in await a.read(3, 100)] == [b"4", b"5", b"6"]
    assert [e.data for e in await a.read(5, 100)] == [b"6"]
    # A tail starting at 2 sees every revision once, in order, whatever each read returns.
    tail = [e.revision for e in await read_all(a, after=2)]
    assert tail == [3, 4, 5, 6]


async def test_head_horizon_and_revisions_follow_another_logs_compaction(
    open_shared: OpenShared,
) -> None:
    a, b = await open_shared(), await open_shared()
    assert await a.append("a", [ev("1"), ev("2")]) == 2
    assert await b.head() == 2
    await b.save_snapshot(2, b"two")
    assert await b.compact(3, datetime.now(UTC)) == 2
    assert await a.horizon() == 2
    assert await b.read(0, 10) == []
    # a may still serve the compacted events it wrote from its cache (the horizon says they
    # "may" be gone), but never anything else.
    assert [e.data for e in await a.read(0, 10)] in ([], [b"1", b"2"])
    # The events are gone, the revisions they had are not given again.
    assert await a.append("a", [ev("3")]) == 3
    assert await b.append("b", []) == 3
    assert [e.revision for e in await b.read(0, 10)] == [3]


async def test_conflict_across_logs(open_shared: OpenShared) -> None:
    a, b = await open_shared(), await open_shared()
    assert await a.append("s", [ev("first")], base_revision=0) == 1
    with pytest.raises(Conflict):
        await b.append("s", [ev("second")], base_revision=0)
    with pytest.raises(Conflict):
        await b.append("s", [], base_revision=0)
    assert await b.append("s", [ev("second")], base_revision=1) == 2
    assert [e.data for e in await a.read(0, 10, stream="s")] == [b"first", b"second"]


async def test_wait_for_wakes_on_another_logs_commit(open_shared: OpenShared) -> None:
    a, b = await open_shared(), await open_shared()
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(a.wait_for(0, timeout=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    started = loop.time()
    await b.append("b", [ev("1")])
    assert await waiter
    assert loop.time() - started < 1
    assert await a.head() == 1


async def test_writers_queue_on_the_file_lock(open_shared: OpenShared, db_path: str) -> None:
    log = await open_shared()
    other = FileLock(writer_lock_path(db_path))
    try:
        assert other.acquire(blocking=False)
        pending = asyncio.create_task(log.append("a", [ev("1")]))
        await asyncio.sleep(0.2)
        assert not pending.done()  # waiting for the other writer, not failing
        other.release()
        assert await asyncio.wait_for(pending, 5) == 1
    finally:
        other.close()


async def test_file_lock_states(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    first, second = FileLock(path), FileLock(path)
    assert first.acquire(blocking=False) and first.held
    assert not second.acquire(blocking=False) and not second.held
    first.release()
    first.release()  # idempotent
    assert second.acquire(blocking=False)
    second.close()
    second.close()  # idempotent
    assert first.acquire(blocking=False)  # closing dropped second's lock
    first.close()
    with pytest.raises(OSError):
        first.acquire()


async def wake_time(waiting: SqliteEventLog, writing: SqliteEventLog) -> float:
    """Seconds from `writing`'s commit until a waiter on `waiting` saw it."""
    loop = asyncio.get_running_loop()
    head = await waiting.head()
    waiter = asyncio.create_task(waiting.wait_for(head, timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = loop.time()
    await writing.append("w", [ev("x")])
    assert await waiter
    return loop.time() - started


async def test_the_change_signal_wakes_without_polling(
    open_shared: OpenShared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_POLL_SIGNALLED", 60.0)
    a, b = await open_shared(), await open_shared()
    assert a._signal is not None and b._signal is not None
    assert await wake_time(a, b) < 5
    assert await wake_time(b, a) < 5
    c = await open_shared()  # a log opened later hears the next commit too
    assert await wake_time(c, a) < 5


async def test_stale_sockets_are_removed(open_shared: OpenShared, db_path: str) -> None:
    log = await open_shared()
    stale = os.path.join(signal_dir(db_path), "999999-1-dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(stale)  # and closed without unlinking, as by a killed process
    assert os.path.exists(stale)
    await log.append("a", [ev("1")])
    assert not os.path.exists(stale)
    await log.aclose()
    assert os.listdir(signal_dir(db_path)) == []  # closing removes its own socket


async def test_a_deep_path_still_gets_a_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_POLL_SIGNALLED", 60.0)
    deep = tmp_path.joinpath(*["a-long-directory-name"] * 5, "events.db")
    assert len(str(deep)) > 108  # too long for a socket address
    a, b = await SqliteEventLog.open(str(deep)), await SqliteEventLog.open(str(deep))
    try:
        assert a._signal is not None
        assert await wake_time(a, b) < 5
    finally:
        await a.aclose()
        await b.aclose()


async def test_without_a_signal_waiters_poll(open_shared: OpenShared, db_path: str) -> None:
    os.makedirs(os.path.dirname(db_path))
    Path(signal_dir(db_path)).write_text("in the way")
    a, b = await open_shared(), await open_shared()
    assert a._signal is None
    assert await wake_time(a, b) < 5


async def test_file_leadership_unreachable(tmp_path: Path) -> None:
    leadership = FileLockLeadership(str(tmp_path / "missing" / "events.db-leader.lock"))
    with pytest.raises(StorageUnavailable):
        await leadership.acquire()
    assert not await leadership.holds()


async def test_a_lost_signal_is_made_up_by_polling(
    open_shared: OpenShared, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await open_shared(), await open_shared()
    assert b._signal is not None
    await a.wait_for(0, timeout=0)  # the first wait reads the head; later ones wait for signals
    monkeypatch.setattr(b._signal, "notify", lambda head: None)
    assert 0.4 < await wake_time(a, b) < 5


async def test_an_unusable_writer_lock_fails_the_open(db_path: str) -> None:
    os.makedirs(writer_lock_path(db_path))  # a directory where the lock file belongs
    with pytest.raises(StorageUnavailable, match="lock file"):
        await SqliteEventLog.open(db_path)


async def test_a_full_signal_queue_makes_the_waiter_read_the_head(
    open_shared: OpenShared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_POLL_SIGNALLED", 60.0)
    a, b = await open_shared(), await open_shared()
    assert a._signal is not None and b._signal is not None
    await a.wait_for(0, timeout=0)  # the first wait reads the head; later ones wait for signals
    monkeypatch.setattr(b._signal, "notify", lambda head: None)  # b's datagram was dropped...

    async def overflow() -> None:  # ... because a's queue was full of older heads
        await asyncio.sleep(0.1)
        assert a._signal is not None
        monkeypatch.chdir(a._signal._dir)  # a relative address: tmp_path can be too deep
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            for _ in range(10):
                sock.sendto(struct.pack("<Q", 0), a._signal._name)

    waiter = asyncio.create_task(a.wait_for(0, timeout=30))
    await b.append("b", [ev("1")])
    await overflow()
    assert await asyncio.wait_for(waiter, 5)


async def test_a_failing_writer_lock_is_unavailable(
    open_shared: OpenShared, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await open_shared()

    def refuse(*, blocking: bool = True) -> bool:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(log._writer._lock, "acquire", refuse)
    results = await asyncio.gather(
        *(log.append("a", [ev(str(i))]) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    with pytest.raises(StorageUnavailable):
        await log.mark_alive(datetime.now(UTC))
    monkeypatch.undo()
    assert await log.append("a", [ev("after")]) == 1


_OPEN_AND_APPEND = """
import asyncio, sys
from storage import NewEvent, open_storage

async def main() -> None:
    storage = await open_storage(sys.argv[1])
    try:
        for _ in range(int(sys.argv[2])):
            revision = await storage.log.append("s", [NewEvent("Test", b"x")])
        print(revision)
    finally:
        await storage.aclose()

asyncio.run(main())
"""


def _open_and_append(url: str, count: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _OPEN_AND_APPEND, url, str(count)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_opening_a_new_file_at_once_all_start(tmp_path: Path) -> None:
    # Workers start together, on a file that may not exist yet, while the first to start is
    # already writing: none may fail to open with "database is locked".
    for attempt in range(3):
        url = f"sqlite:///{tmp_path}/fresh{attempt}.db"
        procs = [_open_and_append(url, 400)] + [_open_and_append(url, 1) for _ in range(8)]
        outcomes = [proc.communicate(timeout=120) for proc in procs]
        failed = [err for proc, (_, err) in zip(procs, outcomes, strict=True) if proc.returncode]
        assert not failed, failed[0][-2000:]
        assert max(int(out) for out, _ in outcomes) == 408

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storage.base import EventLog, NewEvent
from storage.errors import StorageError, StorageUnavailable
from storage.factory import Storage, open_storage
from storage.sqlite import SqliteEventLog
from tests.storage.contract import EventLogContract, Opener
from tests.storage.contract_leadership import StorageContract, StorageOpener
from tests.storage.contract_processes import ProcessContract


class TestSqliteEventLog(EventLogContract):
    persistent = True

    @pytest.fixture
    def open_log(self, tmp_path: Path) -> Opener:
        async def open_() -> EventLog:
            return await SqliteEventLog.open(str(tmp_path / "data" / "events.db"))

        return open_


class TestSqliteStorage(StorageContract):
    # Processes sharing the file contend for a lock beside it.
    shared = True

    @pytest.fixture
    def open_storage(self, tmp_path: Path) -> StorageOpener:
        async def open_() -> Storage:
            return await open_storage(f"sqlite:///{tmp_path}/data/events.db")

        return open_


class TestSqliteProcesses(ProcessContract):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/data/events.db"


@pytest.fixture
async def sqlite_log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    log = await SqliteEventLog.open(str(tmp_path / "nested" / "dir" / "events.db"))
    yield log
    await log.aclose()


def ev(data: str) -> NewEvent:
    return NewEvent("Happened", data.encode())


@pytest.mark.anyio
async def test_creates_parent_directory_and_uses_wal_full(
    sqlite_log: SqliteEventLog, tmp_path: Path
) -> None:
    path = tmp_path / "nested" / "dir" / "events.db"
    assert path.is_file()
    # journal_mode is a property of the file; synchronous one of the writing connection.
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    other.close()
    writer = sqlite_log._writer
    assert await writer.run(lambda: writer.fetchall("PRAGMA synchronous")) == [(2,)]


@pytest.mark.anyio
async def test_group_commit_batches_concurrent_appends(
    sqlite_log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    write_batch = sqlite_log._writer._write_batch

    def counting(batch: Any) -> Any:  # runs on the connection's thread
        sizes.append(len(batch))
        return write_batch(batch)

    monkeypatch.setattr(sqlite_log._writer, "_write_batch", counting)
    results = await asyncio.gather(*(sqlite_log.append("a", [ev(str(i))]) for i in range(2000)))
    assert sorted(results) == list(range(1, 2001))
    assert sum(sizes) == 2000
    # Far fewer transactions (so fsyncs) than appends, and none above the cap.
    assert len(sizes) < 100
    assert max(sizes) <= 512


@pytest.mark.anyio
async def test_stream_conflict_check_uses_the_index(sqlite_log: SqliteEventLog) -> None:
    plan = await sqlite_log._reader.execute_fetchall(
        "EXPLAIN QUERY PLAN SELECT 1 FROM events WHERE stream = ? AND revision > ?", ("a", 1)
    )
    assert any("events_by_stream" in row[3] for row in plan)


@pytest.mark.anyio
async def test_a_malformed_request_fails_alone(sqlite_log: SqliteEventLog) -> None:
    bad = NewEvent("Bad", object())  # type: ignore[arg-type]
    good = [sqlite_log.append(f"s{i}", [ev(str(i))]) for i in range(20)]
    results = await asyncio.gather(sqlite_log.append("x", [bad]), *good, return_exceptions=True)
    assert isinstance(results[0], StorageError)
    assert not isinstance(results[0], StorageUnavailable)
    assert sorted(r for r in results[1:] if isinstance(r, int)) == list(range(1, 21))
    assert [e.revision for e in await sqlite_log.read(0, 100)] == list(range(1, 21))
    assert await sqlite_log.append("a", [ev("after")]) == 21


@pytest.mark.anyio
async def test_driver_errors_are_mapped_and_the_writer_survives(
    sqlite_log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sqlite_log.append("a", [ev("1")])
    writer = sqlite_log._writer
    real_execute = writer.execute

    def failing_execute(sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return real_execute(sql, *args)

    monkeypatch.setattr(writer, "execute", failing_execute)
    results = await asyncio.gather(
        *(sqlite_log.append("a", [ev(str(i))]) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert isinstance(results[0], StorageUnavailable)
    assert isinstance(results[0].__cause__, sqlite3.OperationalError)
    await sqlite_log.save_snapshot(1, b"s")  # a single statement, no COMMIT: still works
    with pytest.raises(StorageUnavailable):
        await sqlite_log.compact(10, datetime.now(UTC))
    monkeypatch.undo()

    # Nothing of the failed batch is visible, and revisions stay gap-free.
    assert await sqlite_log.head() == 1
    assert await sqlite_log.append("a", [ev("2")]) == 2
    assert [e.data for e in await sqlite_log.read(0, 10)] == [b"1", b"2"]
    assert await sqlite_log.compact(10, datetime.now(UTC)) == 1


@pytest.mark.anyio
async def test_reader_errors_are_mapped(
    sqlite_log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> Any:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(sqlite_log._reader, "execute_fetchall", broken)
    with pytest.raises(StorageError) as info:
        await sqlite_log.read(0, 10)
    assert not isinstance(info.value, StorageUnavailable)


@pytest.mark.anyio
async def test_open_failures_are_storage_errors(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(StorageUnavailable):
        await SqliteEventLog.open(str(tmp_path / "a-directory"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StorageUnavailable):
        await SqliteEventLog.open(str(tmp_path / "a-file" / "events.db"))
    (tmp_path / "garbage.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError):
        await SqliteEventLog.open(str(tmp_path / "garbage.db"))


@pytest.mark.anyio
async def test_opened_by_url(tmp_path: Path) -> None:
    storage = await open_storage(f"sqlite:///{tmp_path}/by-url/events.db")
    try:
        assert isinstance(storage.log, SqliteEventLog)
        assert await storage.log.append("a", [ev("1")]) == 1
    finally:
        await storage.aclose()


@pytest.mark.anyio
async def test_needs_wal() -> None:
    with pytest.raises(StorageError, match="WAL"):
        await SqliteEventLog.open(":memory:")


@pytest.mark.anyio
async def test_a_dead_writer_fails_its_callers_instead_of_hanging(
    sqlite_log: SqliteEventLog,
) -> None:
    appends = [asyncio.create_task(sqlite_log.append("a", [ev(str(i))])) for i in range(10)]
    await asyncio.sleep(0)
    sqlite_log._writer._task.cancel()
    results = await asyncio.gather(*appends, return_exceptions=True)
    assert all(isinstance(r, StorageUnavailable) for r in results)
    with pytest.raises(StorageUnavailable):
        await sqlite_log.append("a", [ev("late")])
    await sqlite_log.aclose()


@pytest.mark.anyio
async def test_cancelled_append_before_its_batch_is_not_written(
    sqlite_log: SqliteEventLog,
) -> None:
    lone = asyncio.create_task(sqlite_log.append("a", [ev("lone")]))
    await asyncio.sleep(0)
    lone.cancel()
    first = asyncio.create_task(sqlite_log.append("a", [ev("kept")]))
    dropped = asyncio.create_task(sqlite_log.append("a", [ev("dropped")]))
    await asyncio.sleep(0)
    dropped.cancel()
    assert await first == 1
    assert await sqlite_log.append("a", [ev("next")]) == 2
    assert [e.data for e in await sqlite_log.read(0, 10)] == [b"kept", b"next"]

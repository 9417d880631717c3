"""Choosing a backend, and the leader election that fits it, by URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import SoleLeader, open_storage
from storage.errors import InvalidStorageURL
from storage.file_leadership import FileLockLeadership
from storage.memory import MemoryEventLog
from storage.postgres import PostgresEventLog
from storage.postgres_leadership import AdvisoryLockLeadership
from storage.sqlite import SqliteEventLog

pytestmark = pytest.mark.anyio


async def test_memory() -> None:
    storage = await open_storage("memory://")
    assert isinstance(storage.log, MemoryEventLog)
    assert isinstance(storage.leadership, SoleLeader)
    await storage.aclose()


async def test_sqlite_absolute_path(tmp_path: Path) -> None:
    storage = await open_storage(f"sqlite:///{tmp_path}/sub/events.db")
    assert isinstance(storage.log, SqliteEventLog)
    assert isinstance(storage.leadership, FileLockLeadership)
    await storage.aclose()
    assert (tmp_path / "sub" / "events.db").exists()


async def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = await open_storage("sqlite:///./data/events.db")
    await storage.aclose()
    assert os.path.exists(tmp_path / "data" / "events.db")


async def test_postgres(postgres_db: str) -> None:
    storage = await open_storage(postgres_db)
    assert isinstance(storage.log, PostgresEventLog)
    assert isinstance(storage.leadership, AdvisoryLockLeadership)
    await storage.aclose()


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://", "sqlite:///", "events.db"])
async def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStorageURL):
        await open_storage(url)

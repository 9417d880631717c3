"""Choosing a backend by URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import open_event_log
from storage.errors import InvalidStorageURL
from storage.memory import MemoryEventLog
from storage.postgres import PostgresEventLog
from storage.sqlite import SqliteEventLog

pytestmark = pytest.mark.anyio


async def test_memory() -> None:
    log = await open_event_log("memory://")
    assert isinstance(log, MemoryEventLog)
    await log.aclose()


async def test_sqlite_absolute_path(tmp_path: Path) -> None:
    log = await open_event_log(f"sqlite:///{tmp_path}/sub/events.db")
    assert isinstance(log, SqliteEventLog)
    await log.aclose()
    assert (tmp_path / "sub" / "events.db").exists()


async def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = await open_event_log("sqlite:///./data/events.db")
    await log.aclose()
    assert os.path.exists(tmp_path / "data" / "events.db")


async def test_postgres(postgres_db: str) -> None:
    log = await open_event_log(postgres_db)
    assert isinstance(log, PostgresEventLog)
    await log.aclose()


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://", "sqlite:///", "events.db"])
async def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStorageURL):
        await open_event_log(url)

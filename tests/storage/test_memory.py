from __future__ import annotations

import pytest

from storage import Storage, open_storage
from storage.base import EventLog
from storage.memory import MemoryEventLog
from tests.storage.contract import EventLogContract, Opener
from tests.storage.contract_leadership import StorageContract, StorageOpener
from tests.storage.contract_processes import ProcessContract


class TestMemoryEventLog(EventLogContract):
    persistent = False

    @pytest.fixture
    def open_log(self) -> Opener:
        async def open_() -> EventLog:
            return MemoryEventLog()

        return open_


class TestMemoryStorage(StorageContract):
    shared = False

    @pytest.fixture
    def open_storage(self) -> StorageOpener:
        async def open_() -> Storage:
            return await open_storage("memory://")

        return open_


class TestMemoryProcesses(ProcessContract):
    @pytest.fixture
    def storage_url(self) -> str:
        pytest.skip("a memory log lives in one process's memory: no other process can open it")

from __future__ import annotations

import pytest

from storage.base import EventLog
from storage.memory import MemoryEventLog
from tests.storage.contract import EventLogContract, Opener


class TestMemoryEventLog(EventLogContract):
    persistent = False

    @pytest.fixture
    def open_log(self) -> Opener:
        async def open_() -> EventLog:
            return MemoryEventLog()

        return open_

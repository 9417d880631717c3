"""What the event-log contract's parts share: the opener type and small helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from storage.base import EventLog, NewEvent, StoredEvent

Opener = Callable[[], Awaitable[EventLog]]


def ev(data: str, type_: str = "Happened") -> NewEvent:
    return NewEvent(type_, data.encode())


async def read_all(log: EventLog, after: int = 0) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    while batch := await log.read(after, 7):
        out.extend(batch)
        after = batch[-1].revision
    return out


async def tick() -> None:
    """Let the clock move, so commits on either side of it get different recorded_at."""
    await asyncio.sleep(0.002)

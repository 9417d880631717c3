"""Time as a dependency: the core never reads the wall clock directly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


# Seconds from an arbitrary origin that never goes backwards (rate limits, schedules).
Monotonic = Callable[[], float]

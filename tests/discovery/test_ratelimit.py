"""The per-IP token bucket."""

from __future__ import annotations

from discovery.core.ratelimit import RateLimiter


def test_burst_then_refill_at_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.acquire("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a", 0.0) == 0.5
    assert limiter.acquire("a", 0.5) == 0.0
    assert limiter.acquire("b", 0.5) == 0.0  # clients are independent


def test_zero_rate_disables_limiting() -> None:
    limiter = RateLimiter(rate=0.0, burst=1)
    assert all(limiter.acquire("a", 0.0) == 0.0 for _ in range(100))
    assert len(limiter) == 0


def test_idle_clients_are_forgotten() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    limiter.acquire("busy", 0.0)
    limiter.acquire("busy", 0.0)
    limiter.acquire("idle", 0.0)
    assert limiter.collect_garbage(1.0) == 1  # "idle" has refilled, "busy" has not
    assert len(limiter) == 1
    assert limiter.collect_garbage(10.0) == 1
    assert len(limiter) == 0


def test_a_reservation_is_a_slot_of_its_own() -> None:
    limiter = RateLimiter(rate=2.0, burst=1)
    assert limiter.reserve("a", 0.0, max_wait=10) == 0.0
    # Three waiters arriving together get consecutive slots: each sleeps once, none polls.
    assert [limiter.reserve("a", 0.0, max_wait=10) for _ in range(3)] == [0.5, 1.0, 1.5]
    assert limiter.reserve("a", 0.0, max_wait=1.9) is None  # would wait 2.0: refused...
    assert limiter.reserve("a", 0.0, max_wait=2.0) == 2.0  # ...and took nothing
    assert limiter.reserve("b", 0.0, max_wait=0) == 0.0


def test_zero_rate_reserves_nothing() -> None:
    limiter = RateLimiter(rate=0.0, burst=1)
    assert limiter.reserve("a", 0.0, max_wait=0) == 0.0
    assert len(limiter) == 0

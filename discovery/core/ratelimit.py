"""Per-IP token buckets (upstream: 15 requests/s, burst 60)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key. `now` is a monotonic time in seconds, passed in by the caller."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[object, _Bucket] = {}

    def acquire(self, key: object, now: float) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        bucket = self._refilled(key, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def reserve(self, key: object, now: float, max_wait: float) -> float | None:
        """Take one token now or reserve the next free one: the seconds to wait before using
        it (0.0: at once), or None, taking nothing, when that would be over `max_wait`.

        A reservation puts the bucket in debt, so each waiter sleeps once for its own slot
        instead of waking with every other waiter to race for the next token.
        """
        if self.rate <= 0:
            return 0.0
        bucket = self._refilled(key, now)
        wait = max(0.0, (1.0 - bucket.tokens) / self.rate)
        if wait > max_wait:
            return None
        bucket.tokens -= 1.0
        return wait

    def charge(self, key: object, now: float, tokens: float) -> None:
        """Take `tokens` more for work already done (a large answer): the bucket may go into
        debt, which the client's next requests wait out or are refused for."""
        if self.rate > 0 and tokens > 0:
            self._refilled(key, now).tokens -= tokens

    def _refilled(self, key: object, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def collect_garbage(self, now: float) -> int:
        """Forget buckets that have refilled completely; returns how many were dropped."""
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)

"""Fan-out of changes to watchers, without ever blocking the writer.

Each watcher has a bounded queue. A watcher that falls behind is not dropped: its queue is
discarded and it is marked lagging, and its stream then catches up from the event log
(which has every event) before it goes live again. Memory per watcher stays bounded, and
the writer's cost per event is one append per watcher of that cluster.
"""

from __future__ import annotations

import asyncio
from collections import deque

from discovery.core.changes import Change, WatchSnapshot
from discovery.core.projection import Projection


class Subscription:
    __slots__ = ("_waiter", "capacity", "closed", "cluster_id", "lagging", "queue")

    def __init__(self, cluster_id: str, capacity: int) -> None:
        self.cluster_id = cluster_id
        self.capacity = capacity
        self.queue: deque[Change] = deque()
        self.lagging = False
        self.closed = False
        # A bare future while someone waits, rather than an asyncio.Event (and wait_for's task
        # and timer per wait): tens of thousands of these are held at once.
        self._waiter: asyncio.Future[None] | None = None

    def close(self) -> None:
        self.closed = True
        self._wake()

    def offer(self, change: Change) -> None:
        if self.lagging:
            return
        if len(self.queue) >= self.capacity:
            self.lagging = True
            self.queue.clear()
        else:
            self.queue.append(change)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None) -> bool:
        """Wait until there is something to do; False on timeout."""
        if self.queue or self.lagging or self.closed:
            return True
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True


class WatchHub:
    def __init__(self, projection: Projection, capacity: int) -> None:
        self._projection = projection
        self._capacity = capacity
        self._subs: dict[str, set[Subscription]] = {}
        self.closing = False
        projection.add_listener(self._publish)

    def _publish(self, cluster_id: str, change: Change) -> None:
        for sub in self._subs.get(cluster_id, ()):
            sub.offer(change)

    def _snapshot(self, cluster_id: str) -> WatchSnapshot:
        view = self._projection.views.get(cluster_id)
        affiliates = tuple(view.affiliates.values()) if view is not None else ()
        return WatchSnapshot(self._projection.head, affiliates)

    def subscribe(self, cluster_id: str) -> tuple[Subscription, WatchSnapshot]:
        """Register a watcher and take the cluster's snapshot in one step (no await between)."""
        sub = Subscription(cluster_id, self._capacity)
        if self.closing:
            sub.close()
        self._subs.setdefault(cluster_id, set()).add(sub)
        return sub, self._snapshot(cluster_id)

    def resume_live(self, sub: Subscription) -> WatchSnapshot:
        """Take a lagging watcher live again; it must replay the log up to the returned revision."""
        sub.lagging = False
        sub.queue.clear()
        return self._snapshot(sub.cluster_id)

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.cluster_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.cluster_id]

    def close_all(self) -> None:
        """End every watch stream now (shutdown): clients reconnect and resume elsewhere."""
        self.closing = True
        for subs in self._subs.values():
            for sub in subs:
                sub.close()

    def watchers(self) -> int:
        return sum(len(s) for s in self._subs.values())

"""One watch stream: the cluster's snapshot (or the exact changes after a revision), then
every change, catching up from the log whenever the watcher fell behind the hub."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

from discovery.core.changes import Change, WatchMessage, change_of
from discovery.core.errors import storage_unavailable
from discovery.core.hub import WatchHub
from membership.codec import decode_event
from storage.base import EventLog, StoredEvent
from storage.errors import StorageError

_REPLAY_BATCH = 500


async def watch_cluster(
    hub: WatchHub,
    log: EventLog,
    cluster_id: str,
    *,
    since: int | None,
    idle: float | None,
    on_catch_up: Callable[[], None],
    on_sent: Callable[[int], None] = lambda items: None,
) -> AsyncGenerator[WatchMessage | None, None]:
    """See DiscoveryService.watch; `on_catch_up` is told each time the log is replayed, and
    `on_sent` how many affiliates or replayed events each snapshot or replay carried."""
    sub, snapshot = hub.subscribe(cluster_id)
    try:
        if since is not None and await _replayable(log, since, snapshot.revision):
            replayed = 0
            async for change in _replay(log, cluster_id, since, snapshot.revision):
                replayed += 1
                yield change
            on_sent(replayed)
        else:
            on_sent(len(snapshot.affiliates))
            yield snapshot
        last = snapshot.revision
        while True:
            if not await sub.wait(idle):
                yield None
                continue
            if sub.closed:
                return
            if sub.lagging:
                on_catch_up()
                snapshot = hub.resume_live(sub)
                if await _replayable(log, last, snapshot.revision):
                    async for change in _replay(log, cluster_id, last, snapshot.revision):
                        yield change
                else:
                    yield snapshot
                last = snapshot.revision
                continue
            change = sub.queue.popleft()
            if change.revision > last:
                last = change.revision
                yield change
    finally:
        hub.unsubscribe(sub)


async def _replayable(log: EventLog, since: int, upto: int) -> bool:
    if since > upto:
        return False  # a revision from another log (or the future): resync
    try:
        return since >= await log.horizon()
    except StorageError:
        return False


async def _replay(log: EventLog, cluster_id: str, after: int, upto: int) -> AsyncIterator[Change]:
    while after < upto:
        with storage_unavailable():
            batch: list[StoredEvent] = await log.read(after, _REPLAY_BATCH, stream=cluster_id)
        if not batch:
            return
        for record in batch:
            if record.revision > upto:
                return
            after = record.revision
            change = change_of(record.revision, decode_event(record.type, record.data))
            if change is not None:
                yield change

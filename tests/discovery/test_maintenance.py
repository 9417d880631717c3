"""Leader work: downtime credit, GC, snapshots and compaction, restart from a snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest

from discovery.core.service import DiscoveryService
from discovery.runtime import Runtime
from discovery.settings import Settings
from membership.codec import decode_event
from membership.model import ClusterView
from membership.registry import project
from storage.memory import MemoryEventLog
from tests.fakes import FakeClock

pytestmark = pytest.mark.anyio


def _views(core: DiscoveryService) -> dict[str, ClusterView]:
    return {view.id: view for view in core.cut()[1]}


def _settings(**kw: float) -> Settings:
    return Settings(rate_limit=0, **kw)  # type: ignore[arg-type]


async def test_downtime_does_not_count_against_ttl() -> None:
    log, clock = MemoryEventLog(), FakeClock()
    first = Runtime(_settings(), event_log=log, clock=clock, listeners=False)
    service = await first.start()
    await service.update_affiliate(
        "c", "a", data=b"d", endpoints=[b"e"], ttl_seconds=timedelta(minutes=15).total_seconds()
    )
    await first.stop()

    clock.advance(2 * 3600)  # down for two hours
    second = Runtime(_settings(), event_log=log, clock=clock, listeners=False)
    service = await second.start()
    try:
        [affiliate] = service.list_affiliates("c")[1]
        assert affiliate.expires_at - clock() >= timedelta(minutes=15)
        assert affiliate.endpoints[0].expires_at - clock() >= timedelta(minutes=15)
        assert second.maintenance is not None
        assert await second.maintenance.collect_garbage() == 0
        clock.advance(15 * 60 + 1)
        assert await second.maintenance.collect_garbage() == 1
    finally:
        await second.stop()


async def test_writes_after_restart_are_not_credited() -> None:
    log, clock = MemoryEventLog(), FakeClock()
    first = Runtime(_settings(), event_log=log, clock=clock, listeners=False)
    await first.start()
    await first.stop()
    clock.advance(3600)
    second = Runtime(_settings(), event_log=log, clock=clock, listeners=False)
    service = await second.start()
    try:
        await service.update_affiliate(
            "c", "new", data=b"d", endpoints=[], ttl_seconds=timedelta(seconds=60).total_seconds()
        )
        [affiliate] = service.list_affiliates("c")[1]
        assert affiliate.expires_at == clock() + timedelta(seconds=60)
    finally:
        await second.stop()


async def test_replay_from_empty_equals_the_live_state() -> None:
    log, clock = MemoryEventLog(), FakeClock()
    runtime = Runtime(_settings(), event_log=log, clock=clock, listeners=False)
    service = await runtime.start()
    assert runtime.maintenance is not None
    for i in range(30):
        await service.update_affiliate(
            f"c{i % 3}",
            f"a{i % 11}",
            data=b"%d" % i,
            endpoints=[b"e%d" % (i % 4)],
            ttl_seconds=10 + i,
        )
        clock.advance(1)
        if i % 7 == 0:
            await service.delete_affiliate(f"c{i % 3}", f"a{(i + 1) % 11}")
        if i % 5 == 0:
            await runtime.maintenance.collect_garbage()
    live = _views(service)
    await runtime.stop()
    records = await log.read(0, 10_000)
    replayed = project((r.stream, decode_event(r.type, r.data), r.revision) for r in records)
    assert replayed == live


async def test_restart_from_snapshot_with_compaction_keeps_state() -> None:
    # The real clock: compaction compares it with the log's own commit times.
    log = MemoryEventLog()
    runtime = Runtime(_settings(retention=0), event_log=log, listeners=False)
    service = await runtime.start()
    assert runtime.maintenance is not None
    for i in range(20):
        await service.update_affiliate(
            "c",
            f"a{i}",
            data=b"x",
            endpoints=[],
            ttl_seconds=timedelta(seconds=600).total_seconds(),
        )
    revision = await runtime.maintenance.snapshot()
    for i in range(5):
        await service.update_affiliate(
            "c",
            f"b{i}",
            data=b"y",
            endpoints=[],
            ttl_seconds=timedelta(seconds=600).total_seconds(),
        )
    before = _views(service)
    await runtime.stop()  # takes a final snapshot too

    assert (await log.load_snapshot()) is not None
    assert await log.horizon() >= revision
    again = Runtime(_settings(), event_log=log, listeners=False)
    service = await again.start()
    try:
        after = _views(service)
        assert after.keys() == before.keys()
        for old in before["c"].affiliates.values():
            new = after["c"].affiliates[old.id]
            assert new.data == old.data
            # The restart took a moment, which is credited back: never less time left.
            assert timedelta(0) <= new.expires_at - old.expires_at < timedelta(seconds=5)
    finally:
        await again.stop()


async def test_gc_expires_each_affiliate_once() -> None:
    log, clock = MemoryEventLog(), FakeClock()
    runtime = Runtime(_settings(), event_log=log, clock=clock, listeners=False)
    service = await runtime.start()
    assert runtime.maintenance is not None
    try:
        for i in range(5):
            await service.update_affiliate(
                "c",
                f"a{i}",
                data=b"x",
                endpoints=[],
                ttl_seconds=timedelta(seconds=1).total_seconds(),
            )
        clock.advance(5)
        assert await runtime.maintenance.collect_garbage() == 5
        assert await runtime.maintenance.collect_garbage() == 0
        expired = [r for r in await log.read(0, 100) if r.type == "AffiliateExpired"]
        assert len(expired) == 5
        assert service.list_affiliates("c")[1] == []
        assert "c" not in _views(service)
    finally:
        await runtime.stop()

"""The PostgreSQL backend: the shared contract, plus what only several replicas can show."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import asyncpg
import pytest

from storage import Storage, open_storage
from storage.base import NewEvent
from storage.errors import Conflict, Rejected, StorageUnavailable
from storage.postgres import PostgresEventLog
from storage.postgres_leadership import AdvisoryLockLeadership
from tests.storage.contract import EventLogContract, Opener
from tests.storage.contract_leadership import StorageContract, StorageOpener, eventually
from tests.storage.contract_processes import ProcessContract
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

OpenLog = Callable[..., Awaitable[PostgresEventLog]]
NewLeader = Callable[[str], AdvisoryLockLeadership]


@pytest.fixture
async def open_pg(postgres_db: str) -> AsyncIterator[OpenLog]:
    """Opens instances (each its own pool, like a replica) on this test's database."""
    opened: list[PostgresEventLog] = []

    async def open_(pool_size: int = 10, poll_interval: float = 1.0) -> PostgresEventLog:
        log = await PostgresEventLog.open(
            postgres_db, pool_size=pool_size, poll_interval=poll_interval
        )
        opened.append(log)
        return log

    yield open_
    for log in opened:
        await log.aclose()


@pytest.fixture
async def new_leader(postgres_db: str) -> AsyncIterator[NewLeader]:
    """Makes contenders (each its own lock connection, like a replica) on this test's database."""
    made: list[AdvisoryLockLeadership] = []

    def new(name: str) -> AdvisoryLockLeadership:
        made.append(AdvisoryLockLeadership(postgres_db, name))
        return made[-1]

    yield new
    for leader in made:
        await leader.release()


class TestPostgresEventLog(EventLogContract):
    persistent = True

    @pytest.fixture
    def open_log(self, postgres_db: str) -> Opener:
        return lambda: PostgresEventLog.open(postgres_db)


class TestPostgresStorage(StorageContract):
    shared = True

    @pytest.fixture
    def open_storage(self, postgres_db: str) -> StorageOpener:
        async def open_() -> Storage:
            return await open_storage(postgres_db)

        return open_


class TestPostgresProcesses(ProcessContract):
    @pytest.fixture
    def storage_url(self, postgres_db: str) -> str:
        return postgres_db


def _events(*payloads: bytes) -> list[NewEvent]:
    return [NewEvent("Test", payload) for payload in payloads]


@pytest.mark.anyio
async def test_concurrent_replicas_and_a_tailing_reader(open_pg: OpenLog) -> None:
    writers = [await open_pg(pool_size=4) for _ in range(4)]
    reader = await open_pg()
    tasks_per_writer, batches = 6, 8
    sent: set[bytes] = set()
    for w in range(len(writers)):
        for t in range(tasks_per_writer):
            for b in range(batches):
                sent.update(f"{w}/{t}/{b}/{i}".encode() for i in range(1 + b % 3))

    async def write(w: int, t: int) -> None:
        for b in range(batches):
            batch = _events(*(f"{w}/{t}/{b}/{i}".encode() for i in range(1 + b % 3)))
            last = await writers[w].append(f"stream-{w}-{t}", batch)
            assert last >= len(batch)

    seen: list[bytes] = []

    async def tail() -> None:
        position = 0
        while len(seen) < len(sent):
            assert await reader.wait_for(position, timeout=30)
            for event in await reader.read(position, 50):
                # Gap-free and in order while appends are still committing: a revision that
                # committed late would show up here as a skipped number.
                assert event.revision == position + 1
                position = event.revision
                seen.append(event.data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(tail)
        for w in range(len(writers)):
            for t in range(tasks_per_writer):
                tg.start_soon(write, w, t)

    assert len(seen) == len(set(seen)) == len(sent)
    assert set(seen) == sent
    assert await reader.head() == len(sent)


@pytest.mark.anyio
async def test_notify_wakes_a_waiter_in_another_instance(open_pg: OpenLog) -> None:
    writer = await open_pg()
    # A long poll interval: only a notification can wake the waiter quickly.
    waiter = await open_pg(poll_interval=60)
    head = await writer.append("s", _events(b"1"))
    async with anyio.create_task_group() as tg:
        woke_after: list[float] = []

        async def wait() -> None:
            start = anyio.current_time()
            assert await waiter.wait_for(head, timeout=10)
            woke_after.append(anyio.current_time() - start)

        tg.start_soon(wait)
        await anyio.sleep(0.1)
        await writer.append("s", _events(b"2"))
    assert woke_after[0] < 2


@pytest.mark.anyio
async def test_replicas_creating_the_schema_at_once(postgres_db: str) -> None:
    logs = await asyncio.gather(*(PostgresEventLog.open(postgres_db) for _ in range(6)))
    try:
        assert [await log.head() for log in logs] == [0] * 6
    finally:
        for log in logs:
            await log.aclose()


@pytest.mark.anyio
async def test_unreachable_server_is_unavailable() -> None:
    # A bound socket that never listens: connections to its port are refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(StorageUnavailable):
            await PostgresEventLog.open(f"postgresql://postgres@127.0.0.1:{port}/none")


@pytest.mark.anyio
async def test_only_one_instance_leads(new_leader: NewLeader) -> None:
    a, b = new_leader("gc"), new_leader("gc")
    assert await a.acquire()
    assert await a.acquire()  # idempotent
    assert not await b.acquire()
    assert (await a.holds(), await b.holds()) == (True, False)
    assert await new_leader("other").acquire()  # names are independent

    await a.release()
    assert await eventually(b.acquire)
    assert await b.holds()

    c = new_leader("gc")
    await b.release()
    await b.release()  # idempotent
    assert not await b.holds()
    assert await eventually(c.acquire)


@pytest.mark.anyio
async def test_leadership_ends_with_its_connection(postgres_db: str, new_leader: NewLeader) -> None:
    a, b = new_leader("gc"), new_leader("gc")
    assert await a.acquire()
    admin = await asyncpg.connect(postgres_db)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
        )
        assert killed == 1
    finally:
        await admin.close()
    assert await eventually(b.acquire)
    assert not await a.holds()


@pytest.mark.anyio
async def test_server_restart(postgres_server: PostgresServer) -> None:
    a = await PostgresEventLog.open(postgres_server.url)
    b = await PostgresEventLog.open(postgres_server.url, poll_interval=60)
    leader = AdvisoryLockLeadership(postgres_server.url, "gc")
    try:
        assert await a.append("s", _events(b"1", b"2")) == 2
        assert await leader.acquire()

        await anyio.to_thread.run_sync(postgres_server.stop)  # immediate: a crash to clients
        for call in (
            lambda: a.append("s", _events(b"lost")),
            lambda: a.append("s", _events(b"lost"), base_revision=0),
            lambda: a.read(0, 10),
            a.head,
            lambda: b.wait_for(2, timeout=1),
            AdvisoryLockLeadership(postgres_server.url, "other").acquire,
        ):
            with pytest.raises(StorageUnavailable):
                await call()
        assert not await leader.holds()

        await anyio.to_thread.run_sync(postgres_server.start)
        # The same instances work again, and the acknowledged events survived the crash.
        assert [e.data for e in await b.read(0, 10)] == [b"1", b"2"]
        with pytest.raises(Conflict):
            await a.append("s", _events(b"x"), base_revision=1)

        # b's LISTEN connection came back by itself: it wakes without polling.
        woke_after: list[float] = []

        async def wait() -> None:
            start = anyio.current_time()
            assert await b.wait_for(2, timeout=20)
            woke_after.append(anyio.current_time() - start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.1)
            assert await a.append("s", _events(b"3")) == 3
        assert woke_after[0] < 10
        assert await leader.acquire()
    finally:
        await leader.release()
        await a.aclose()
        await b.aclose()


@pytest.mark.anyio
async def test_a_refused_append_fails_alone(open_pg: OpenLog) -> None:
    # PostgreSQL text cannot hold NUL: the database refuses that append. Sent in the same
    # group as good appends, it must fail alone, and the log must stay available.
    log = await open_pg()
    good = [log.append(f"good-{i}", _events(b"%d" % i)) for i in range(20)]
    bad = log.append("bad\x00stream", _events(b"x"))
    results = await asyncio.gather(*good[:10], bad, *good[10:], return_exceptions=True)
    refused = results.pop(10)
    assert isinstance(refused, Rejected), refused
    assert all(isinstance(r, int) for r in results), results
    revisions = [e.revision for e in await log.read(0, 100)]
    assert revisions == list(range(1, 21))
    assert await log.append("after", _events(b"y")) == 21

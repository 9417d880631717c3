"""The PostgreSQL backend (asyncpg): several service replicas share one database.

Each replica appends through its own pool, tails the log by revision and wakes up on
LISTEN/NOTIFY. Besides the EventLog protocol it offers advisory-lock leader election
(try_acquire_leadership / is_leader / release_leadership), so that exactly one replica at a time
runs expiry. Appends are durable when they return as long as the server keeps its default
synchronous_commit = on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from storage.base import NewEvent, Snapshot, StoredEvent
from storage.errors import Conflict, StorageError, StorageUnavailable

CHANNEL = "discovery_events"
_CONNECT_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 5.0
_PING_TIMEOUT = 5.0
# How long aclose() lets calls already under way finish (e.g. appends waiting for the lock).
_DRAIN_TIMEOUT = 30.0
# How often an idle LISTEN connection is pinged: a peer that vanished without closing the socket
# (host crash, partition) is otherwise only noticed by the kernel after many minutes.
_LISTENER_PING_INTERVAL = 10.0
_MAX_BACKOFF = 5.0


def _lock_key(name: str) -> int:
    # A stable 64-bit key: Python's hash() differs between processes, advisory keys must not.
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


_SCHEMA_LOCK = _lock_key("discovery.storage.schema")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (revision BIGINT PRIMARY KEY, stream TEXT NOT NULL,
    type TEXT NOT NULL, data BYTEA NOT NULL, recorded_at TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS events_stream_revision ON events (stream, revision);
CREATE TABLE IF NOT EXISTS snapshot (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    revision BIGINT NOT NULL, blob BYTEA NOT NULL, taken_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Compaction may delete every event, the newest included; it records the newest deleted revision
# as the horizon, so max(revision) falling back to the horizon is always the head.
_HORIZON = "(SELECT value::bigint FROM meta WHERE key = 'horizon')"
_HEAD = f"SELECT COALESCE(max(revision), {_HORIZON}, 0) FROM events"

_INSERT = f"""
WITH base AS (
    SELECT COALESCE(max(revision), {_HORIZON}, 0) AS head, clock_timestamp() AS at FROM events
), inserted AS (
    INSERT INTO events (revision, stream, type, data, recorded_at)
    SELECT base.head + u.ord, u.s, u.t, u.d, base.at
    FROM base, unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS u(s, t, d, ord)
    RETURNING revision
)
SELECT max(revision), pg_notify('{CHANNEL}', max(revision)::text) FROM inserted
"""

_MOVED = "SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1 AND revision > $2)"
# The (stream, base) pairs of a batch that some committed event of the stream is above.
_MOVED_MANY = """
SELECT r.s, r.b FROM unnest($1::text[], $2::bigint[]) AS r(s, b)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.stream = r.s AND e.revision > r.b)
"""
_MAX_BATCH = 256
_SELECT = "SELECT revision, stream, type, data, recorded_at FROM events"
_SET_META = """
INSERT INTO meta (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""

# A transaction-level advisory lock would do as well; the table lock is what the eventsourcing
# library uses, and it needs no key convention shared with other code.
_LOCK_EVENTS = "LOCK TABLE events IN EXCLUSIVE MODE"

# Connection exceptions (08), insufficient resources (53: too many connections) and operator
# intervention (57P: shutdown, crash, starting up) are outages, worth a retry later.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def _translate(exc: Exception) -> StorageError | None:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(str(exc))
    if isinstance(exc, asyncpg.PostgresError):
        outage = str(exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES)
        return (StorageUnavailable if outage else StorageError)(str(exc))
    # asyncpg reports a closed connection or a closing pool as a bare InterfaceError; its
    # ValueError subclasses are bad arguments, i.e. bugs, not outages.
    if isinstance(exc, OSError | asyncpg.InterfaceError) and not isinstance(exc, ValueError):
        return StorageUnavailable(str(exc) or type(exc).__name__)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return StorageError(str(exc))
    return None


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """Let no asyncpg or socket exception escape: re-raise it as a storage error."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        mapped = _translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def _terminate(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.terminate()


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT)
    except Exception:
        _terminate(conn)


# (stream, events, base revision, the caller's future)
_Append = tuple[str, tuple[NewEvent, ...], int | None, "asyncio.Future[int]"]


class PostgresEventLog:
    """The event log in a PostgreSQL database; open it with `await PostgresEventLog.open(url)`."""

    def __init__(self, url: str, pool: Any, poll_interval: float) -> None:
        self._url = url
        self._pool = pool
        self._poll_interval = poll_interval
        self._closed = False
        self._changed = asyncio.Event()
        # The highest head this instance knows was committed (its own appends, notifications).
        self._seen_head = 0
        self._listener: Any = None
        self._listener_lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._leaders: dict[str, Any] = {}
        self._leader_lock = asyncio.Lock()
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._pending: deque[_Append] = deque()
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 10, poll_interval: float = 1.0
    ) -> PostgresEventLog:
        """Connect, create the schema if missing and start listening; raises StorageUnavailable.

        `poll_interval` bounds how long wait_for() trusts notifications alone (seconds).
        """
        with _mapped():
            # min_size=0: no background reconnect attempts (and log noise) while the server is down;
            # connections are made on demand and kept while in use.
            pool = await asyncpg.create_pool(
                url, min_size=0, max_size=pool_size, timeout=_CONNECT_TIMEOUT
            )
        log = cls(url, pool, poll_interval)
        try:
            with _mapped():
                async with pool.acquire() as conn, conn.transaction():
                    # Replicas starting together would race CREATE ... IF NOT EXISTS into unique
                    # violations on the catalogs; the lock makes the DDL run once, then no-op.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                    await conn.execute(_SCHEMA)
                await log._connect_listener()
        except BaseException:
            pool.terminate()
            raise
        log._keeper = asyncio.create_task(log._keep_listening())
        return log

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("event log is closed")

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        """A pooled connection for one call; counts the call so aclose() can let it finish."""
        self._check_open()
        self._in_flight += 1
        try:
            with _mapped():
                async with self._pool.acquire() as conn:
                    yield conn
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._drained.set()

    def _wake(self) -> None:
        # Swap, then set: waiters holding the old event wake; later waiters get the new one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._seen_head = max(self._seen_head, int(payload))
        self._wake()

    async def _connect_listener(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=_CONNECT_TIMEOUT)
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            _terminate(conn)
            raise
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self._listener, self._listener_lost = conn, lost

    async def _keep_listening(self) -> None:
        # Runs until aclose() cancels it. Notifications sent while we are disconnected are gone for
        # good, so each reconnect wakes the waiters to re-read head() themselves.
        delay = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listener_lost.wait(), _LISTENER_PING_INTERVAL)
            if not self._listener_lost.is_set():
                try:
                    with _mapped():
                        await asyncio.wait_for(self._listener.fetchval("SELECT 1"), _PING_TIMEOUT)
                    continue
                except (StorageError, TimeoutError):
                    _terminate(self._listener)
            await asyncio.sleep(delay)
            try:
                with _mapped():
                    await self._connect_listener()
            except StorageError:
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            delay = 0.1
            self._wake()

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, base_revision: int | None = None
    ) -> int:
        if not events:
            async with self._conn() as conn:
                if base_revision is not None and await conn.fetchval(_MOVED, stream, base_revision):
                    raise Conflict(f"stream {stream!r} changed after revision {base_revision}")
                return int(await conn.fetchval(_HEAD))
        self._check_open()
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, tuple(events), base_revision, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="postgres-appends")
        return await done

    async def _flush(self) -> None:
        """Commit queued appends in groups: one transaction, one lock, one WAL flush each.

        Appends are serialized by a table lock held until commit (below), so without grouping
        a replica would pay one commit round trip per append, one after another.
        """
        while self._pending:
            batch: list[_Append] = []
            while self._pending and len(batch) < _MAX_BATCH:
                request = self._pending.popleft()
                if not request[3].done():
                    batch.append(request)
            if not batch:
                continue
            try:
                outcomes = await self._commit(batch)
            except StorageError as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (*_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, Conflict):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    async def _commit(self, batch: list[_Append]) -> list[int | Conflict]:
        async with self._conn() as conn, conn.transaction(isolation="read_committed"):
            # Appends are serialized, and the lock is held until commit. Why:
            # - a SEQUENCE would leave gaps when a transaction rolls back, and revisions must
            #   be gap-free;
            # - without serialization, a transaction holding a lower revision may commit
            #   after one holding a higher revision, and a tailing reader that has read past
            #   the lower revision would never see it.
            # EXCLUSIVE conflicts with itself and with writers, but not with the ACCESS SHARE
            # lock of plain SELECTs, so readers never wait. The next appender acquires the
            # lock only after our commit is visible, and under READ COMMITTED its statements
            # then see our rows. This is the eventsourcing library's approach
            # (eventsourcing/postgres.py, _lock_table); see
            # https://www.postgresql.org/docs/current/explicit-locking.html
            await conn.execute(_LOCK_EVENTS)
            head = int(await conn.fetchval(_HEAD))
            checks = [(st, base) for st, _, base, _ in batch if base is not None]
            moved: set[tuple[str, int]] = set()
            if checks:
                rows = await conn.fetch(_MOVED_MANY, [c[0] for c in checks], [c[1] for c in checks])
                moved = {(r[0], r[1]) for r in rows}
            streams: list[str] = []
            types: list[str] = []
            blobs: list[bytes] = []
            # Each accepted request's position (count of rows up to and including its own).
            ends: list[int | Conflict] = []
            # stream -> rows written up to its last request here; they become head + n
            written: dict[str, int] = {}
            for stream, events, base, _ in batch:
                # A request must also see the requests before it in the same batch.
                earlier = written.get(stream)
                if base is not None and (
                    (stream, base) in moved or (earlier is not None and head + earlier > base)
                ):
                    ends.append(Conflict(f"stream {stream!r} changed after revision {base}"))
                    continue
                for event in events:
                    streams.append(stream)
                    types.append(event.type)
                    blobs.append(event.data)
                written[stream] = len(streams)
                ends.append(len(streams))
            if not streams:
                return ends
            # pg_notify is delivered at commit only, so no replica wakes for a rollback.
            last = int(await conn.fetchval(_INSERT, streams, types, blobs))
        self._seen_head = max(self._seen_head, last)
        self._wake()
        return [e if isinstance(e, Conflict) else head + e for e in ends]

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> list[StoredEvent]:
        # Two statements rather than "$3 IS NULL OR stream = $3": each gets its own plan, and
        # the filtered one can use the (stream, revision) index.
        where, args = ("", ()) if stream is None else ("stream = $3 AND", (stream,))
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"{_SELECT} WHERE {where} revision > $1 ORDER BY revision LIMIT $2",
                after,
                max(limit, 0),
                *args,
            )
        return [StoredEvent(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def _fetchval(self, sql: str, *args: object) -> Any:
        async with self._conn() as conn:
            return await conn.fetchval(sql, *args)

    async def head(self) -> int:
        return int(await self._fetchval(_HEAD))

    async def horizon(self) -> int:
        return int(await self._fetchval(f"SELECT COALESCE({_HORIZON}, 0)"))

    async def wait_for(self, after: int, timeout: float | None = None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            self._check_open()
            # Take the event before reading the head: a notification arriving between the read
            # and the wait sets this very event, so it cannot be lost.
            changed = self._changed
            if self._seen_head > after or await self.head() > after:
                return True
            # Notifications can be lost (e.g. across a reconnect), so never wait longer than
            # poll_interval without re-reading the head.
            wait = self._poll_interval
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                wait = min(wait, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    async def save_snapshot(self, revision: int, blob: bytes) -> None:
        await self._fetchval(
            """
            INSERT INTO snapshot (revision, blob, taken_at) VALUES ($1, $2, clock_timestamp())
            ON CONFLICT (only_row) DO UPDATE
            SET revision = EXCLUDED.revision, blob = EXCLUDED.blob, taken_at = EXCLUDED.taken_at
            WHERE snapshot.revision <= EXCLUDED.revision
            """,
            revision,
            blob,
        )

    async def load_snapshot(self) -> Snapshot | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT revision, blob, taken_at FROM snapshot")
        return None if row is None else Snapshot(row[0], row[1], row[2])

    async def compact(self, before_revision: int, recorded_before: datetime) -> int:
        async with self._conn() as conn, conn.transaction(isolation="read_committed"):
            # The appenders' lock: deleting the newest events and moving the horizon must
            # look atomic to them, since they compute the next revision from both.
            await conn.execute(_LOCK_EVENTS)
            # Nothing newer than the snapshot goes, so snapshot + log rebuild the state.
            bound = await conn.fetchval(
                "SELECT LEAST($1::bigint, COALESCE((SELECT revision + 1 FROM snapshot), 1))",
                before_revision,
            )
            # Only a prefix may go (revisions stay dense above the horizon): the first event
            # recorded too recently ends it, even if older ones follow after a clock step.
            recent = await conn.fetchval(
                "SELECT min(revision) FROM events WHERE revision < $1 AND recorded_at >= $2",
                bound,
                recorded_before,
            )
            row = await conn.fetchrow(
                """
                WITH gone AS (DELETE FROM events WHERE revision < $1 RETURNING revision)
                SELECT count(*), max(revision) FROM gone
                """,
                bound if recent is None else recent,
            )
            if row[0]:
                await conn.execute(_SET_META, "horizon", str(row[1]))
        return int(row[0])

    async def mark_alive(self, at: datetime) -> None:
        # ISO text rather than TIMESTAMPTZ: the value comes back exactly as given.
        await self._fetchval(_SET_META, "last_alive", at.isoformat())

    async def last_alive(self) -> datetime | None:
        value = await self._fetchval("SELECT value FROM meta WHERE key = 'last_alive'")
        return None if value is None else datetime.fromisoformat(value)

    async def try_acquire_leadership(self, name: str) -> bool:
        """Become the leader `name` unless another instance is; True when this one is leader.

        Not part of EventLog. Leadership is a session-level advisory lock held on a connection
        of its own: it ends when release_leadership() or aclose() is called, or when that
        connection dies (server restart, network) — so a leader must check is_leader() before
        each round of leader-only work. Idempotent; raises StorageUnavailable.
        """
        self._check_open()
        async with self._leader_lock:
            if await self._still_leader(name):
                return True
            key = _lock_key(f"discovery.leader:{name}")
            with _mapped():
                conn = await asyncpg.connect(self._url, timeout=_CONNECT_TIMEOUT)
                try:
                    held = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
                except BaseException:
                    _terminate(conn)
                    raise
            if not held:
                await _close(conn)
                return False
            self._leaders[name] = conn
            return True

    async def is_leader(self, name: str) -> bool:
        """True while this instance holds leadership `name` and its lock connection is alive.

        Not part of EventLog. A False caused by a dead connection also forgets the leadership
        (the server released the lock with the session). Never raises a storage error.
        """
        async with self._leader_lock:
            return await self._still_leader(name)

    async def _still_leader(self, name: str) -> bool:
        conn = self._leaders.get(name)
        if conn is None:
            return False
        with contextlib.suppress(Exception):  # whatever failed, we cannot vouch for the lock
            if not conn.is_closed():
                await asyncio.wait_for(conn.fetchval("SELECT 1"), _PING_TIMEOUT)
                return True
        del self._leaders[name]
        _terminate(conn)
        return False

    async def release_leadership(self, name: str) -> None:
        """Give up leadership `name`, if held, so another instance can take it. Idempotent.

        Not part of EventLog. Closing the session releases its advisory lock, so no unlock call
        can fail half-way.
        """
        async with self._leader_lock:
            conn = self._leaders.pop(name, None)
            if conn is not None:
                await _close(conn)

    async def aclose(self) -> None:
        if self._closed:
            return
        if self._flusher is not None and not self._flusher.done():
            # Appends queued before the close are committed (or fail) before anything closes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._flusher), _DRAIN_TIMEOUT)
        self._closed = True
        self._wake()  # waiters see the log closed and raise StorageUnavailable
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        async with self._leader_lock:
            for conn in self._leaders.values():
                await _close(conn)
            self._leaders.clear()
        await _close(self._listener)
        if self._in_flight:
            # Calls that got in before the close finish, so what they appended is acknowledged.
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), _DRAIN_TIMEOUT)
        try:
            await asyncio.wait_for(self._pool.close(), _CLOSE_TIMEOUT)
        except Exception:
            self._pool.terminate()

"""The PostgreSQL backend's tables and the statements that are shared by its modules."""

from __future__ import annotations

from storage.postgres_driver import lock_key

CHANNEL = "discovery_events"

SCHEMA_LOCK = lock_key("discovery.storage.schema")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (revision BIGINT PRIMARY KEY, stream TEXT NOT NULL,
    type TEXT NOT NULL, data BYTEA NOT NULL, recorded_at TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS events_stream_revision ON events (stream, revision);
CREATE TABLE IF NOT EXISTS snapshot (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    revision BIGINT NOT NULL, blob BYTEA NOT NULL, taken_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Compaction may delete every event, the newest included; it records the newest deleted revision
# as the horizon, so max(revision) falling back to the horizon is always the head.
HORIZON = "(SELECT value::bigint FROM meta WHERE key = 'horizon')"
HEAD = f"SELECT COALESCE(max(revision), {HORIZON}, 0) FROM events"

# The revisions come planned (storage/group_commit.py) from the head read under LOCK_EVENTS;
# one commit time for the whole group, as one append is one commit.
INSERT = f"""
WITH now AS (SELECT clock_timestamp() AS at), inserted AS (
    INSERT INTO events (revision, stream, type, data, recorded_at)
    SELECT u.r, u.s, u.t, u.d, now.at
    FROM now, unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[]) AS u(r, s, t, d)
    RETURNING revision
)
SELECT max(revision), pg_notify('{CHANNEL}', max(revision)::text) FROM inserted
"""

MOVED = "SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1 AND revision > $2)"
# The (stream, base) pairs of a batch that some committed event of the stream is above.
MOVED_MANY = """
SELECT r.s, r.b FROM unnest($1::text[], $2::bigint[]) AS r(s, b)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.stream = r.s AND e.revision > r.b)
"""
SELECT = "SELECT revision, stream, type, data, recorded_at FROM events"
SET_META = """
INSERT INTO meta (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""

# Appends are serialized, and the lock is held until commit. Why:
# - a SEQUENCE would leave gaps when a transaction rolls back, and revisions must be gap-free;
# - without serialization, a transaction holding a lower revision may commit after one holding a
#   higher revision, and a tailing reader that has read past the lower revision would never
#   see it.
# EXCLUSIVE conflicts with itself and with writers, but not with the ACCESS SHARE lock of plain
# SELECTs, so readers never wait. The next appender acquires the lock only after our commit is
# visible, and under READ COMMITTED its statements then see our rows. This is the eventsourcing
# library's approach (eventsourcing/postgres.py, _lock_table); see
# https://www.postgresql.org/docs/current/explicit-locking.html
# A transaction-level advisory lock would do as well; the table lock needs no key convention
# shared with other code.
LOCK_EVENTS = "LOCK TABLE events IN EXCLUSIVE MODE"

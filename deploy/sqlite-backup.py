#!/usr/bin/env python3
"""Online backup of the discovery service's SQLite database, safe while the service runs.

    discovery-sqlite-backup DESTINATION [SOURCE]

SOURCE defaults to the file named by DISCOVERY_STORAGE (sqlite:///...). The copy is made with
SQLite's backup API from a read-only connection: the database is in WAL mode, so the service
keeps writing meanwhile and the copy is one consistent revision. The copy is checked
(PRAGMA integrity_check) and then renamed into place, so DESTINATION is never half written.
Standard library only; the container image ships it as /usr/local/bin/discovery-sqlite-backup.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path


def source_from_env() -> Path:
    storage = os.environ.get("DISCOVERY_STORAGE", "sqlite:///./data/discovery.db")
    if not storage.startswith("sqlite:///"):
        raise SystemExit(f"DISCOVERY_STORAGE is not SQLite ({storage.split('://')[0]})")
    return Path(storage.removeprefix("sqlite:///"))


def backup(source: Path, destination: Path) -> int:
    """Copy `source` to `destination`; returns the number of events in the copy."""
    if not source.is_file():
        raise SystemExit(f"{source}: no such database")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)
        (check,) = dst.execute("PRAGMA integrity_check").fetchone()
        if check != "ok":
            raise SystemExit(f"backup of {source} failed its integrity check: {check}")
        (events,) = dst.execute("SELECT COUNT(*) FROM events").fetchone()
    finally:
        dst.close()
        src.close()
    os.replace(partial, destination)
    return int(events)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    destination = Path(argv[1])
    source = Path(argv[2]) if len(argv) == 3 else source_from_env()
    events = backup(source, destination)
    print(f"{source} -> {destination}: {events} events in the log")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

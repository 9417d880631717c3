"""Whether the event log can be read and written, each logged once per change of state.

Reads (the log tail) and writes (appends, the leader's liveness mark) fail apart: a full or
read-only disk stops writes while the projection and every watch keep serving. Readiness
wants both, and changes only when the state does, so a load balancer sees no flapping.
"""

from __future__ import annotations

import logging

log = logging.getLogger("discovery")


class StorageHealth:
    def __init__(self) -> None:
        self.reads_ok = True
        self.writes_ok = True

    def read_succeeded(self) -> None:
        if not self.reads_ok:
            log.info("event log readable again")
        self.reads_ok = True

    def read_failed(self, error: object) -> None:
        if self.reads_ok:
            log.warning("event log unavailable", extra={"error": str(error)})
        self.reads_ok = False

    def write_succeeded(self) -> None:
        if not self.writes_ok:
            log.info("writes to the event log succeed again")
        self.writes_ok = True

    def write_failed(self, error: object) -> None:
        if self.writes_ok:
            log.error("writes to the event log fail", extra={"error": str(error)})
        self.writes_ok = False

    @property
    def reason(self) -> str:
        """Why the log is not usable ("" when it is)."""
        if not self.reads_ok:
            return "event log unavailable"
        return "" if self.writes_ok else "writes to the event log fail (disk full or read-only?)"

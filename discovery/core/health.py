"""Whether the event log can be read and written, each logged once per change of state.

Reads (the log tail) and writes (appends, the leader's liveness mark) fail apart: a full or
read-only disk stops writes while the projection and every watch keep serving. Readiness
wants both, and changes only when the state does, so a load balancer sees no flapping.
"""

from __future__ import annotations

import logging
import time

from discovery.core.clock import Monotonic

log = logging.getLogger("discovery")

# A write failure is believed for this long once writes stop being tried. The leader tries one
# every heartbeat (its liveness mark), so on a full disk it stays believed; a replica that
# writes nothing itself, and gets no writes while unready, would otherwise never find out
# that the database is back.
WRITE_FAILURE_HOLD = 15.0


class StorageHealth:
    def __init__(self, monotonic: Monotonic = time.monotonic) -> None:
        self._monotonic = monotonic
        self.reads_ok = True
        self.writes_ok = True
        self._write_failed_at = 0.0

    def read_succeeded(self) -> None:
        if not self.reads_ok:
            log.info("event log readable again")
        self.reads_ok = True
        if not self.writes_ok and self._monotonic() - self._write_failed_at > WRITE_FAILURE_HOLD:
            log.info("no write failed lately; taking writes again")
            self.writes_ok = True

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
        self._write_failed_at = self._monotonic()

    @property
    def reason(self) -> str:
        """Why the log is not usable ("" when it is)."""
        if not self.reads_ok:
            return "event log unavailable"
        return "" if self.writes_ok else "writes to the event log fail (disk full or read-only?)"

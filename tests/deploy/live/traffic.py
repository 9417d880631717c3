"""Client traffic through a deployment while it fails over: a writer and a resuming watcher.

The writer PUTs a new affiliate in a loop and remembers which writes were acknowledged and when;
the watcher follows the cluster's SSE stream and, when the stream breaks, resumes with
Last-Event-ID exactly as a real client would. Both run in threads so the test can stop
containers meanwhile; the figures they record are the failover figures the docs quote.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.support.sse import SSEEvent


@dataclass
class Writer:
    url: str
    cluster: str
    verify: ssl.SSLContext | bool = True
    interval: float = 0.05
    acked: dict[str, float] = field(default_factory=dict)
    """affiliate id -> monotonic time the write was acknowledged."""
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5, verify=self.verify) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                affiliate = f"w{n:05d}"
                body = {"data": base64.b64encode(affiliate.encode()).decode(), "ttl": 600}
                try:
                    response = http.put(
                        f"/v1/clusters/{self.cluster}/affiliates/{affiliate}", json=body
                    )
                    if response.status_code == 200:
                        self.acked[affiliate] = time.monotonic()
                    else:
                        self.failures += 1
                except httpx.HTTPError:
                    self.failures += 1
                time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def longest_gap(self, since: float) -> float:
        """Longest time without an acknowledged write after `since` (the outage as seen)."""
        times = sorted(t for t in self.acked.values() if t >= since)
        return max((b - a for a, b in zip([since, *times], times, strict=False)), default=0.0)

    def acked_after(self, since: float) -> int:
        return sum(1 for t in self.acked.values() if t >= since)


@dataclass
class Watcher:
    url: str
    cluster: str
    verify: ssl.SSLContext | bool = True
    revisions: list[int] = field(default_factory=list)
    breaks: list[float] = field(default_factory=list)
    """Monotonic times the stream ended."""
    resumes: list[float] = field(default_factory=list)
    """Monotonic times the first event after a break arrived."""
    snapshots_after_resume: int = 0
    first_snapshot: int | None = None
    """The revision of the first snapshot: the watch owes every revision after it."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        broken = False
        while not self._stop.is_set():
            headers = {"Last-Event-ID": str(self.revisions[-1])} if self.revisions else {}
            try:
                with (
                    httpx.Client(
                        base_url=self.url, timeout=httpx.Timeout(5, read=30), verify=self.verify
                    ) as http,
                    http.stream(
                        "GET", f"/v1/clusters/{self.cluster}/watch", headers=headers
                    ) as response,
                ):
                    for event in _Frames(response):
                        if broken:
                            self.resumes.append(time.monotonic())
                            broken = False
                        if event.event == "snapshot":
                            if self.revisions:
                                self.snapshots_after_resume += 1
                            elif self.first_snapshot is None:
                                self.first_snapshot = event.id
                        elif event.id is not None:
                            self.revisions.append(event.id)
                        if self._stop.is_set():
                            return
            except httpx.HTTPError:
                pass
            if not broken and not self._stop.is_set():
                self.breaks.append(time.monotonic())
                broken = True
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(40)


class _Frames:
    """The blocking twin of tests.support.sse.events (the threads here are synchronous)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def __iter__(self) -> _Frames:
        return self

    def __next__(self) -> SSEEvent:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields:
                    raw_id = fields.get("id")
                    return SSEEvent(
                        int(raw_id) if raw_id else None,
                        fields.get("event", "message"),
                        json.loads(fields["data"]),
                    )
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        raise StopIteration

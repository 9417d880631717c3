"""Run `discovery-service` as a real process on free ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    """A discovery-service subprocess; `start()` waits for /readyz."""

    storage: str
    extra: Sequence[str] = ()
    http_port: int = field(default_factory=free_port)
    grpc_port: int | None = None
    metrics_port: int | None = None
    # More than 1 runs a supervisor with that many worker processes.
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    # What the readiness probe trusts: a CA file for a self-signed certificate.
    verify: ssl.SSLContext | bool = True
    proc: subprocess.Popen[bytes] | None = None
    # A file, not a pipe: an undrained pipe fills up and blocks the service's logging.
    log_path: str = field(
        default_factory=lambda: tempfile.mkstemp(prefix="discovery-", suffix=".log")[1]
    )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def argv(self) -> list[str]:
        grpc = f"127.0.0.1:{self.grpc_port}" if self.grpc_port else ""
        return [
            sys.executable, "-m", "discovery",
            "--storage", self.storage,
            "--http-addr", f"127.0.0.1:{self.http_port}",
            "--grpc-addr", grpc,
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}" if self.metrics_port else "",
            "--workers", str(self.workers),
            "--log-format", "text",
            *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), env=env, stdout=subprocess.DEVNULL, stderr=log
            )
        try:
            return self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> ServiceProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"discovery-service exited early: {self.output()[-2000:]}")
            try:
                ready = httpx.get(self.url + "/readyz", timeout=1.0, verify=self.verify)
                if ready.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("discovery-service did not become ready")

    def worker_pids(self) -> list[int]:
        """The supervisor's children: its workers (empty for a single process)."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                return [int(p) for p in children.read().split()]
        except FileNotFoundError:
            return []

    def wait_workers(self, count: int | None = None, timeout: float = 30.0) -> list[int]:
        """Wait until `count` (default: all) workers answer, by their response header."""
        count = self.workers if count is None else count
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < count:
            assert time.monotonic() < deadline, f"workers seen: {seen}\n{self.output()[-2000:]}"
            # A fresh connection each time: the kernel hands it to any waiting worker.
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(self.url + "/readyz", timeout=1.0, verify=self.verify)
                if r.status_code == 200:
                    seen.add(r.headers["x-discovery-worker"])
            time.sleep(0.01)
        return self.worker_pids()

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        os.unlink(self.log_path)
        return self.proc.returncode

    def output(self) -> str:
        """Everything the service logged so far."""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

"""Start the servers under test as real processes and wait until they answer."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# All load comes from one address here; the per-address quotas would refuse most of it.
PER_ADDRESS_LIMITS_OFF = (
    "--max-clusters-per-client", "0", "--max-affiliates-per-client", "0",
    "--max-connections-per-client", "0", "--max-watches-per-client", "0",
)  # fmt: skip


def service_argv(storage: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "discovery", "--storage", storage,
        "--http-addr", f"127.0.0.1:{port}", "--grpc-addr", "", "--metrics-addr", "",
        "--rate-limit", "0", "--log-level", "warning", *PER_ADDRESS_LIMITS_OFF, *extra,
    ]  # fmt: skip


def uvicorn_argv(target: str, port: int) -> list[str]:
    # The same server settings as the service: uvicorn's defaults (uvloop, httptools).
    return [
        sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


@contextmanager
def running(
    argv: Sequence[str], port: int, ready_path: str = "/", timeout: float = 120.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` until the block ends; waits until `ready_path` answers below 500."""
    proc = subprocess.Popen(argv, env=dict(os.environ), stdout=subprocess.DEVNULL)
    try:
        wait_ready(proc, port, ready_path, timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, timeout: float) -> float:
    """Seconds until the server answered `path`; raises if it died or never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args!r} did not answer within {timeout}s")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """A process and its live descendants (a supervisor and its workers)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pending += [int(child) for child in f.read().split()]
        except FileNotFoundError:
            continue  # it exited meanwhile
        found.append(current)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and every live descendant."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(FileNotFoundError):
            total += cpu_seconds(member)
    return total


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and every live descendant."""
    total = 0
    for member in family(pid):
        with contextlib.suppress(FileNotFoundError):
            total += rss_bytes(member)
    return total


def worker_count(workers: str) -> int:
    """Processes a `--workers` value starts here (`auto`: one per core this process may use)."""
    return len(os.sched_getaffinity(0)) if workers == "auto" else int(workers)


def wait_workers(port: int, workers: str, timeout: float = 60.0) -> None:
    """Wait until every worker process answers (each names itself in a response header):
    measuring from the first ready worker would measure one worker for the first seconds."""
    count = worker_count(workers)
    seen: set[str] = set() if count > 1 else {"the only one"}
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only workers {sorted(seen)} of {count} answered")
        try:
            # A fresh connection each time: the kernel hands it to any waiting worker.
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if r.status_code == 200 and "x-discovery-worker" in r.headers:
                seen.add(r.headers["x-discovery-worker"])
        except httpx.HTTPError:
            pass
        time.sleep(0.01)

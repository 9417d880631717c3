"""Running `discovery-service` to see how it fails at start-up: one clear line, exit status 1."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.process import free_port


def run_service(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The service with free ports on all three listeners and `args` after them."""
    argv = [
        sys.executable, "-m", "discovery",
        "--http-addr", f"127.0.0.1:{free_port()}",
        "--grpc-addr", f"127.0.0.1:{free_port()}",
        "--metrics-addr", f"127.0.0.1:{free_port()}",
        *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("discovery-service:")]
    for text in expected:
        assert text in line, line


@contextmanager
def listening_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]

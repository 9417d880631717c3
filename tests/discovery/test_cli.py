"""The `discovery-service` command as a user runs it: flags, environment, errors, listeners."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.support.process import ServiceProcess, free_port


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "discovery", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_flags_with_their_environment_variables() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    assert "--storage" in out.stdout and "DISCOVERY_STORAGE" in out.stdout
    assert "--trust-x-real-ip" in out.stdout


def test_bad_flag_value_names_the_flag() -> None:
    out = run_cli("--gc-interval", "-5")
    assert out.returncode == 2
    assert "--gc-interval" in out.stderr and "greater than 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_environment_value_names_the_setting() -> None:
    out = run_cli(env={"DISCOVERY_RATE_LIMIT": "lots"})
    assert out.returncode == 2
    assert "rate-limit" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_storage_scheme_is_a_clear_error() -> None:
    port = free_port()
    out = run_cli(
        "--storage", "mysql://db/x", "--http-addr", f"127.0.0.1:{port}",
        "--grpc-addr", "", "--metrics-addr", "",
    )  # fmt: skip
    assert out.returncode == 1
    assert "unknown storage URL scheme" in out.stderr
    assert "Traceback" not in out.stderr


def test_metrics_listener_serves_prometheus_text() -> None:
    metrics_port = free_port()
    proc = ServiceProcess("memory://", extra=["--metrics-addr", f"127.0.0.1:{metrics_port}"])
    proc.start()
    try:
        httpx.put(
            proc.url + "/v1/clusters/c/affiliates/a", json={"data": "eA==", "ttl": 60}, timeout=5
        )
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "discovery_state_affiliates 1.0" in text
        assert "discovery_log_append_seconds_bucket" in text
        assert "process_resident_memory_bytes" in text
    finally:
        assert proc.stop() == 0

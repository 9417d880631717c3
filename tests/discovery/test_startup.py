"""Start-up failures, with the real process: one clear line and exit status 1, never a
traceback, a crash or a hang; an unreachable PostgreSQL is waited for instead."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.certs import self_signed
from tests.support.postgres import PostgresServer
from tests.support.process import ServiceProcess
from tests.support.startup import assert_one_clear_line, listening_port, run_service

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_service("--storage", "memory://", *args, timeout=timeout)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with listening_port() as port:
        yield port


@pytest.mark.parametrize("flag", ["--http-addr", "--grpc-addr", "--metrics-addr"])
def test_a_port_in_use(flag: str, taken_port: int) -> None:
    result = _run(flag, f"127.0.0.1:{taken_port}")
    assert_one_clear_line(result, f"127.0.0.1:{taken_port}", "in use")


def test_a_missing_certificate(tmp_path: Path) -> None:
    _, key = self_signed("localhost").write(tmp_path)
    missing = tmp_path / "nowhere.crt"
    result = _run("--tls-cert", str(missing), "--tls-key", str(key))
    assert_one_clear_line(result, str(missing), "no such file")


def test_an_unreadable_key(tmp_path: Path) -> None:
    cert, _ = self_signed("localhost").write(tmp_path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    result = _run("--tls-cert", str(cert), "--tls-key", str(garbage))
    assert_one_clear_line(result, "TLS")


def test_a_key_that_is_a_directory(tmp_path: Path) -> None:
    cert, _ = self_signed("localhost").write(tmp_path)
    result = _run("--tls-cert", str(cert), "--tls-key", str(tmp_path))
    assert_one_clear_line(result, "TLS", str(tmp_path))


def test_a_certificate_without_its_key(tmp_path: Path) -> None:
    cert, _ = self_signed("localhost").write(tmp_path)
    result = _run("--tls-cert", str(cert))
    assert_one_clear_line(result, "--tls-cert", "--tls-key")


def test_a_certificate_for_another_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = self_signed("localhost").write(tmp_path / "a")
    _, other_key = self_signed("localhost").write(tmp_path / "b")
    result = _run("--tls-cert", str(cert), "--tls-key", str(other_key))
    assert_one_clear_line(result, "TLS")


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://", "nonsense"])
def test_a_bad_storage_url(url: str) -> None:
    assert_one_clear_line(_run("--storage", url), "storage", url)


def test_an_unwritable_data_directory(tmp_path: Path) -> None:
    # A regular file where the directory should be: even root cannot create a file inside.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/data/discovery.db"
    assert_one_clear_line(_run("--storage", url), "storage", str(blocker))


def test_an_unreachable_postgresql_is_waited_for(postgres_server: PostgresServer) -> None:
    postgres_server.stop()
    service = ServiceProcess(postgres_server.url, extra=["--heartbeat-interval", "1"])
    with open(service.log_path, "ab") as log:
        service.proc = subprocess.Popen(service.argv(), stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while "storage unreachable, retrying" not in service.output():
            assert service.proc.poll() is None, service.output()[-2000:]
            assert time.monotonic() < deadline, service.output()[-2000:]
            time.sleep(0.1)
        with pytest.raises(httpx.HTTPError):
            httpx.get(service.url + "/readyz", timeout=1.0)
        assert service.proc.poll() is None
        postgres_server.start()
        service._wait_ready(60)
        assert "Traceback" not in service.output()
    finally:
        assert service.stop() == 0

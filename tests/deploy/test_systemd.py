"""systemd units: `systemd-analyze` accepts them, and the service's ExecStart really serves."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.deploy_support import (
    DEPLOY,
    INSTALLED_BIN,
    check_kubespan_argv,
    check_settings_env,
    parse_env_file,
    parse_unit,
    require_tool,
    settings_from,
    unit_environment,
    venv_bin,
)

SYSTEMD = DEPLOY / "systemd"
SERVICE_UNIT = SYSTEMD / "discovery-service.service"
AGENT_UNIT = SYSTEMD / "kubespan.service"
ENV_EXAMPLE = SYSTEMD / "discovery.env.example"
UNITS = [SERVICE_UNIT, AGENT_UNIT]
# `systemd-analyze security` exposure, x10 (0 = locked down, 100 = wide open). Regression guard.
EXPOSURE_MAX = {SERVICE_UNIT.name: 20, AGENT_UNIT.name: 30}
READY_TIMEOUT = 20.0


def _installed_copy(unit: Path, directory: Path) -> Path:
    """The unit as installed here: the documented venv path replaced by the test's venv."""
    copy = directory / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED_BIN, str(venv_bin("")) + "/"))
    return copy


def _exec_start(unit: Path) -> list[str]:
    (line,) = parse_unit(unit)["Service"]["ExecStart"]
    return shlex.split(line)


def test_exec_start_runs_a_console_script_of_the_documented_install() -> None:
    for unit, script in ((SERVICE_UNIT, "discovery-service"), (AGENT_UNIT, "kubespan")):
        argv = _exec_start(unit)
        assert argv[0] == INSTALLED_BIN + script
        assert venv_bin(script).exists(), f"{script} is not a console script of the install"


def test_service_unit_settings() -> None:
    service = parse_unit(SERVICE_UNIT)["Service"]
    assert service["DynamicUser"] == ["yes"]
    assert service["StateDirectory"] == ["discovery"]
    assert service["EnvironmentFile"] == ["-/etc/discovery/discovery.env"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert service["SystemCallFilter"] == ["@system-service"]
    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert service["Restart"] == ["on-failure"]
    env = unit_environment(service["Environment"])
    settings = check_settings_env(env, SERVICE_UNIT.name)
    assert settings.storage == "sqlite:////var/lib/discovery/discovery.db"


def test_env_example_holds_only_valid_settings() -> None:
    settings_from(parse_env_file(ENV_EXAMPLE), [], ENV_EXAMPLE.name)
    # The commented alternatives must be valid too, once uncommented.
    commented = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith("#DISCOVERY_"):
            key, _, value = line[1:].partition("=")
            commented[key] = value
    assert commented, "the example documents the optional settings"
    check_settings_env(commented, f"{ENV_EXAMPLE.name} (commented)")
    assert "/etc/discovery/discovery.env" in ENV_EXAMPLE.read_text()


def test_agent_unit_has_net_admin_only_and_a_private_state_dir() -> None:
    service = parse_unit(AGENT_UNIT)["Service"]
    assert service["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert service["AmbientCapabilities"] == ["CAP_NET_ADMIN"]
    assert service["StateDirectory"] == ["kubespan"]
    assert service["StateDirectoryMode"] == ["0700"]
    assert service["DeviceAllow"] == ["/dev/net/tun rw"]
    assert service["ProtectSystem"] == ["strict"]
    assert "AF_NETLINK" in service["RestrictAddressFamilies"][0].split()
    assert "ExecStop" not in service, "leaving the cluster is an operator's decision"
    argv = _exec_start(AGENT_UNIT)
    check_kubespan_argv(argv[1:], AGENT_UNIT.name)
    assert argv[1] == "run"
    assert argv[argv.index("--config") + 1] == "/etc/kubespan/config.yaml"
    assert argv[argv.index("--state-dir") + 1] == "/var/lib/kubespan"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    copies = [_installed_copy(unit, tmp_path) for unit in UNITS]
    result = subprocess.run(
        [analyze, "verify", *map(str, copies)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings (exit 0): any line naming our units fails.
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not ours, result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_security_exposure(unit: Path, tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    copy = _installed_copy(unit, tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={EXPOSURE_MAX[unit.name]}", copy],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# -- the unit's ExecStart, run for real ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unit_environment(state_dir: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment as systemd would give them, moved into `state_dir` and onto free
    loopback ports: Environment= lines, then the EnvironmentFile (the shipped example)."""
    service = parse_unit(SERVICE_UNIT)["Service"]
    (env_file,) = service["EnvironmentFile"]
    assert env_file.lstrip("-") == "/etc/discovery/discovery.env"
    # systemd starts services with a clean environment: nothing of ours leaks in.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update(unit_environment(service.get("Environment", [])))
    env.update(parse_env_file(ENV_EXAMPLE))

    (state,) = service["StateDirectory"]
    real_state = f"/var/lib/{state}"
    argv = [a.replace(real_state, str(state_dir)) for a in _exec_start(SERVICE_UNIT)]
    assert argv[0] == INSTALLED_BIN + "discovery-service"
    argv[0] = str(venv_bin("discovery-service"))
    for key, value in env.items():
        env[key] = value.replace(real_state, str(state_dir))
        if key.endswith("_ADDR") and value:
            env[key] = f"127.0.0.1:{_free_port()}"
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag.endswith("-addr") and (value if eq else argv[i + 1]):
            address = f"127.0.0.1:{_free_port()}"
            if eq:
                argv[i] = f"{flag}={address}"
            else:
                argv[i + 1] = address
    return argv, env


def _request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class _Service:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    log: Path

    @property
    def http(self) -> str:
        return "http://" + self.env["DISCOVERY_HTTP_ADDR"]

    def tail(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 15 s after SIGTERM:\n{self.tail()}")


@contextmanager
def _unit_running(state_dir: Path) -> Iterator[_Service]:
    """The unit's ExecStart with its environment, state in `state_dir`, once /readyz is 200."""
    state_dir.mkdir(mode=0o700, exist_ok=True)
    argv, env = _unit_environment(state_dir)
    log_path = state_dir / "service.log"
    with log_path.open("w") as log:
        # WorkingDirectory=%S/discovery
        proc = subprocess.Popen(
            argv, env=env, cwd=state_dir, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        service = _Service(proc, env, log_path)
        try:
            _wait_ready(service)
            yield service
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _wait_ready(service: _Service) -> None:
    url = service.http + "/readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            pytest.fail(f"exited with {service.proc.returncode} before ready:\n{service.tail()}")
        with suppress(OSError):
            if _request("GET", url)[0] == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"{url} not 200 within {READY_TIMEOUT} s:\n{service.tail()}")


def _put(service: _Service, cluster: str, affiliate: str) -> None:
    body = json.dumps({"data": base64.b64encode(b"sealed").decode(), "ttl": 600}).encode()
    url = f"{service.http}/v1/clusters/{cluster}/affiliates/{affiliate}"
    status, answer = _request("PUT", url, body)
    assert status == 200, answer


def _affiliates(service: _Service, cluster: str) -> set[str]:
    status, body = _request("GET", f"{service.http}/v1/clusters/{cluster}/affiliates")
    assert status == 200, body
    return {a["id"] for a in json.loads(body)["affiliates"]}


@pytest.mark.slow
def test_exec_start_serves_backs_up_online_and_stops_cleanly(tmp_path: Path) -> None:
    """The unit's ExecStart and environment: ready within 20 s, every listener up, the
    container health check and the online backup (docs/operations.md) work against it, and
    SIGTERM exits 0. Then the documented restore: replace the database file, start again."""
    state_dir, backup = tmp_path / "discovery", tmp_path / "backup.db"
    with _unit_running(state_dir) as service:
        env = service.env
        assert _request("GET", service.http + "/healthz")[0] == 200
        # The container HEALTHCHECK script finds the listener from the same environment.
        for path in ("/healthz", "/readyz"):
            check = _script("healthcheck.py", path, env=env)
            assert check.returncode == 0, check.stderr
        if env.get("DISCOVERY_METRICS_ADDR"):
            status, body = _request("GET", f"http://{env['DISCOVERY_METRICS_ADDR']}/metrics")
            assert status == 200 and b"discovery_log_head" in body
        if env.get("DISCOVERY_GRPC_ADDR"):
            host, port = env["DISCOVERY_GRPC_ADDR"].rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=2).close()

        _put(service, "ops-test", "kept")
        result = _script("sqlite-backup.py", str(backup), env=env)
        assert result.returncode == 0, result.stderr
        _put(service, "ops-test", "after-backup")

        assert service.stop() == 0, service.tail()
    storage = env["DISCOVERY_STORAGE"]
    assert storage.startswith(f"sqlite:///{state_dir}/")
    assert Path(storage.removeprefix("sqlite:///")).exists(), "state belongs in StateDirectory"

    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copy2(backup, restored / Path(storage).name)
    with _unit_running(restored) as service:
        assert _affiliates(service, "ops-test") == {"kept"}
        assert service.stop() == 0, service.tail()


def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPLOY / name), *args],
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthcheck_fails_when_nothing_listens() -> None:
    env = {"PATH": os.environ["PATH"], "DISCOVERY_HTTP_ADDR": f"127.0.0.1:{_free_port()}"}
    check = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py")],
        env=env,
        capture_output=True,
        timeout=10,
    )
    assert check.returncode == 1


def test_state_dirs_are_not_world_readable_by_default() -> None:
    for unit in UNITS:
        service = parse_unit(unit)["Service"]
        assert service["UMask"] == ["0077"]
        assert service["StateDirectoryMode"] in (["0700"], ["0750"])

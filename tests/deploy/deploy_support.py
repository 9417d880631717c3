"""Shared helpers for the deployment tests: paths, tool requirements, small parsers."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from discovery.settings import Settings, parse_addr

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCS = REPO / "docs"

# Where the documented installs put the console scripts (systemd units, docs).
INSTALLED_BIN = "/opt/kubespan-discovery/bin/"


def venv_bin(script: str) -> Path:
    """A console script of the Python running the tests (the project's .venv in `make test`)."""
    return Path(sys.executable).parent / script


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, apt_package: str) -> str:
    """Path of `name`; in CI as root a missing tool fails (make test installs it), else skips."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} not installed (Debian package {apt_package})"
    if in_ci() and os.geteuid() == 0:
        pytest.fail(f"{reason}: `make test` must install it in CI")
    pytest.skip(reason)


def optional_tool(name: str, apt_package: str) -> str:
    """Path of `name`, or skip: tools the suite never requires."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (optional; Debian package {apt_package})")
    return path


def require_module(name: str, pypi_package: str) -> Any:
    """Import `name`; in CI a missing module fails (it is a dev dependency), else skips."""
    try:
        return __import__(name)
    except ImportError:
        if in_ci():
            pytest.fail(f"{pypi_package} missing: it belongs in pyproject's dev extras")
        pytest.skip(f"{pypi_package} not installed")


@cache
def pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = pyproject()["project"]["scripts"]
    return scripts


@cache
def service_flags() -> frozenset[str]:
    """Every long option that `discovery-service --help` lists."""
    out = subprocess.run(
        [str(venv_bin("discovery-service")), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]+)", out))


def settings_env_names() -> frozenset[str]:
    return frozenset("DISCOVERY_" + name.upper() for name in Settings.model_fields)


class _GivenOnly(Settings):
    """Settings from the given values only, not from the test process's environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def check_settings_env(env: dict[str, str], where: str) -> Settings:
    """Every DISCOVERY_* name is a setting and the values validate together."""
    unknown = {k for k in env if k.startswith("DISCOVERY_")} - settings_env_names()
    assert not unknown, f"{where}: not settings of discovery-service: {sorted(unknown)}"
    values: dict[str, Any] = {
        k.removeprefix("DISCOVERY_").lower(): v
        for k, v in env.items()
        if k.startswith("DISCOVERY_")
    }
    return _GivenOnly(**values)


def default_ports() -> dict[str, int]:
    """Listener name -> default port, from the settings' defaults."""
    ports: dict[str, int] = {}
    for name in ("grpc_addr", "http_addr", "metrics_addr"):
        port = parse_addr(str(Settings.model_fields[name].default))[1]
        assert port is not None
        ports[name] = port
    return ports


def listener_ports(settings: Settings) -> set[int]:
    ports = set()
    for addr in (settings.grpc_addr, settings.http_addr, settings.metrics_addr):
        port = parse_addr(addr)[1] if addr else None
        if port is not None:
            ports.add(port)
    return ports


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}}; repeated keys accumulate."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_environment(lines: list[str]) -> dict[str, str]:
    """Environment= lines (each may hold several shell-quoted KEY=VALUE words) as a dict."""
    env: dict[str, str] = {}
    for line in lines:
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments, optional quotes)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def settings_from(env: dict[str, str], argv: list[str], where: str) -> Settings:
    """The settings a process would get from this environment and these flags (flags win)."""
    from discovery.__main__ import _parser

    check_settings_env(env, where)
    unknown = {a.split("=")[0] for a in argv if a.startswith("--")} - service_flags()
    assert not unknown, f"{where}: flags not in `discovery-service --help`: {sorted(unknown)}"
    prefix = "DISCOVERY_"
    values: dict[str, Any] = {
        k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)
    }
    values.update(vars(_parser().parse_args(argv)))
    return _GivenOnly(**values)


_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default} and ${VAR:?error} against `env`."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in env:
            return env[name]
        assert ":?" not in match.group(0), f"{name} must be set: {match.group(2)}"
        return match.group(2) or ""

    return _VARIABLE.sub(one, value)


def check_kubespan_argv(argv: list[str], where: str) -> None:
    """`argv` (after the program name) is accepted by the kubespan CLI."""
    from kubespan.__main__ import _parser

    try:
        _parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{where}: kubespan rejects {argv}") from exc

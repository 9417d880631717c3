"""podman for the live deployment tests: the engine settings this kind of machine needs, and
small typed wrappers (run, build, inspect, wait) that every live test shares.

Two machine facts shape it. This kernel's cgroup (v1) layout refuses crun and the systemd cgroup
manager, so every call uses runc and cgroupfs; and the machine's resource limits refuse the
default container ulimits, so none are set. Both go in a CONTAINERS_CONF file, not in flags,
because podman-compose starts podman itself and only the environment reaches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


class PodmanError(RuntimeError):
    """A podman command exited non-zero; the message carries its stderr."""


def _conf_file() -> Path:
    path = Path(tempfile.gettempdir()) / "kubespan-deploy-tests" / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != CONTAINERS_CONF:
        path.write_text(CONTAINERS_CONF)
    return path


def engine_env() -> dict[str, str]:
    """The environment for podman and podman-compose (adds CONTAINERS_CONF)."""
    return {**os.environ, "CONTAINERS_CONF": str(_conf_file())}


def podman(
    *args: str,
    check: bool = True,
    timeout: float = 120.0,
    stdin: bytes | None = None,
) -> str:
    """Run `podman ARGS`, return stdout; PodmanError with stderr on failure when `check`."""
    argv = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, timeout=timeout, env=engine_env(), check=False
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise PodmanError(f"podman {' '.join(args[:3])}...: exit {proc.returncode}: {err[-3000:]}")
    return proc.stdout.decode(errors="replace")


def image_exists(ref: str) -> bool:
    return (
        subprocess.run(
            ["podman", "image", "exists", ref], env=engine_env(), capture_output=True, check=False
        ).returncode
        == 0
    )


def image_size(ref: str) -> int:
    """Uncompressed size in bytes, as `podman images` reports it."""
    info: list[dict[str, Any]] = json.loads(podman("image", "inspect", ref))
    size: int = info[0]["Size"]
    return size


def build(
    context: Path,
    tag: str,
    *,
    file: Path,
    target: str | None = None,
    build_args: dict[str, str] | None = None,
    timeout: float = 1500.0,
) -> float:
    """`podman build` (layers cached in podman's storage); returns the wall time in seconds."""
    # Docker format: the OCI image config has no HEALTHCHECK, and podman would drop it.
    args = ["build", "--format", "docker", "--network", "host", "-f", str(file), "-t", tag]
    if target:
        args += ["--target", target]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    # The repository keeps the ignore file next to the Dockerfile (BuildKit's naming); podman
    # 4.3 reads only .containerignore/.dockerignore in the context, so pass it explicitly.
    ignore = file.with_name(file.name + ".dockerignore")
    if ignore.exists():
        args += ["--ignorefile", str(ignore)]
    started = time.monotonic()
    podman(*args, str(context), timeout=timeout)
    return time.monotonic() - started


def inspect(container: str) -> dict[str, Any]:
    info: list[dict[str, Any]] = json.loads(podman("container", "inspect", container))
    return info[0]


def remove_containers(names: Sequence[str]) -> None:
    if names:
        podman("rm", "--force", "--time", "5", *names, check=False, timeout=60)


def remove_volumes(names: Sequence[str]) -> None:
    for name in names:
        podman("volume", "rm", "--force", name, check=False)


def logs(container: str, tail: int = 60) -> str:
    """The container's output; `podman logs` replays its stderr on stderr, so both are read."""
    proc = subprocess.run(
        ["podman", "logs", "--tail", str(tail), container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=engine_env(),
        timeout=60,
        check=False,
    )
    return proc.stdout.decode(errors="replace")


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.25
) -> T:
    """Poll `probe` until it returns a truthy value; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def missing_tools() -> list[str]:
    return [t for t in ("podman", "runc", "debootstrap") if shutil.which(t) is None]

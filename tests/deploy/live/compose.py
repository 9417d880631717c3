"""deploy/compose*.yaml run with podman-compose under a throwaway project name.

The variables the compose files read (base images, host ports, the PostgreSQL password) come
from the test, so the real files run unchanged against the local stand-in images and on ports
that cannot clash with anything else on the machine.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.deploy_support import venv_bin
from tests.deploy.live.podman import engine_env, inspect, logs, podman, remove_volumes


@dataclass
class Compose:
    files: list[Path]
    """The compose file, then any override files (merged in order, as `-f A -f B`)."""
    env: dict[str, str]
    project: str = field(default_factory=lambda: f"deploy-live-{os.urandom(3).hex()}")

    def run(self, *args: str, timeout: float = 300.0) -> str:
        argv = [str(venv_bin("podman-compose")), "-p", self.project]
        for file in self.files:
            argv += ["-f", str(file)]
        argv += args
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**engine_env(), **self.env},
            cwd=self.files[0].parent,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"podman-compose {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def container(self, service: str) -> str:
        """The container of a one-replica service (podman-compose names it project_service_1)."""
        return f"{self.project}_{service}_1"

    def exit_code(self, service: str) -> int:
        code: int = inspect(self.container(service))["State"]["ExitCode"]
        return code

    def healthy(self, service: str) -> bool:
        """Run the service's health check once (no systemd timer runs it here)."""
        out = podman("healthcheck", "run", self.container(service), check=False, timeout=30)
        return out.strip() in ("", "healthy") and self._health_status(service) == "healthy"

    def _health_status(self, service: str) -> str:
        state = inspect(self.container(service))["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        status: str = health.get("Status", "")
        return status

    def logs(self, *services: str) -> str:
        return "\n".join(f"--- {s}\n{logs(self.container(s))}" for s in services)

    def down(self) -> None:
        """Remove the containers and every volume they used, anonymous ones too: `down -v`
        removes the project's named volumes, not those the images' VOLUME lines created."""
        ids = podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
            "--format", "{{.ID}}",
        ).split()  # fmt: skip
        anonymous = [
            m["Name"]
            for cid in ids
            for m in inspect(cid)["Mounts"]
            if m.get("Type") == "volume" and re.fullmatch(r"[0-9a-f]{64}", m.get("Name", ""))
        ]
        self.run("down", "-v", "-t", "10", timeout=180)
        remove_volumes(anonymous)

"""deploy/Dockerfile: stages, entry points, copied paths and the builder step, without Docker.

No container engine runs here, so the image is not built. What the build depends on is checked
instead: every COPY source exists, the builder copies everything the wheel needs (the builder
step itself is replayed on exactly the copied files), entry points are console scripts, and the
environment, volume and ports agree with the service's settings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.deploy_support import (
    DEPLOY,
    REPO,
    check_kubespan_argv,
    check_settings_env,
    console_scripts,
    default_ports,
    pyproject,
)
from tests.deploy.dockerfile import context_copies, exec_form, stage_env, stages


def test_stages_and_the_default_target() -> None:
    all_stages = stages()
    assert list(all_stages)[-1] == "service", "a plain `docker build` must produce the service"
    assert {"builder", "agent", "service"} <= set(all_stages)
    for stage in all_stages.values():
        assert stage.base.startswith("python:3.11"), "pyproject requires Python >= 3.11"
        assert "slim" in stage.base


def test_entry_points_are_console_scripts_of_the_distribution() -> None:
    all_stages = stages()
    scripts = console_scripts()
    assert exec_form(all_stages["service"].last("ENTRYPOINT")) == ["discovery-service"]
    assert exec_form(all_stages["agent"].last("ENTRYPOINT")) == ["kubespan", "run"]
    for name in ("service", "agent"):
        assert exec_form(all_stages[name].last("ENTRYPOINT"))[0] in scripts
    agent = all_stages["agent"]
    default_args = exec_form(agent.last("ENTRYPOINT"))[1:] + exec_form(agent.last("CMD"))
    check_kubespan_argv(default_args, "Dockerfile agent ENTRYPOINT + CMD")


def test_service_stage_state_user_ports_and_healthcheck() -> None:
    service = stages()["service"]
    settings = check_settings_env(stage_env(service), "Dockerfile service ENV")
    assert settings.storage == "sqlite:////var/lib/discovery/discovery.db"
    assert exec_form(service.last("VOLUME")) == ["/var/lib/discovery"]
    exposed = {int(p) for p in service.last("EXPOSE").split()}
    assert exposed == set(default_ports().values())

    user = service.last("USER").split(":")[0]
    args = {a.split("=")[0]: a.split("=")[1] for a in service.all("ARG") if "=" in a}
    uid = args.get(user.strip("${}"), user)
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot checks it)"

    healthcheck = service.last("HEALTHCHECK")
    command = exec_form(healthcheck.partition("CMD")[2].strip())
    copied = {dest: sources for sources, dest in context_copies(service)}
    script = command[-1]
    assert script in copied, "the health check script must be copied into the image"
    assert copied[script] == ["deploy/healthcheck.py"]


def test_agent_stage_installs_the_network_tools() -> None:
    agent = stages()["agent"]
    installs = " ".join(agent.all("RUN"))
    for package in ("wireguard-tools", "iproute2", "nftables", "wireguard-go"):
        assert package in installs.split(), f"agent image lacks {package}"


def test_copy_sources_exist_and_cover_every_package() -> None:
    all_stages = stages()
    copied: set[str] = set()
    for stage in all_stages.values():
        for sources, _ in context_copies(stage):
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source.rstrip("/"))
    project = pyproject()
    top_level = {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}
    builder = all_stages["builder"]
    builder_sources = {s.rstrip("/") for srcs, _ in context_copies(builder) for s in srcs}
    assert top_level <= builder_sources, f"builder misses {top_level - builder_sources}"
    assert {"pyproject.toml", project["project"]["readme"]} <= builder_sources


def test_the_dockerignore_keeps_the_sources_in_the_context() -> None:
    ignored = {
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert ".venv" in ignored and ".git" in ignored
    copied = {
        s.rstrip("/") for st in stages().values() for srcs, _ in context_copies(st) for s in srcs
    }
    for source in copied:
        assert source not in ignored and source.split("/")[0] not in ignored, source


@pytest.mark.slow
def test_the_builder_step_makes_a_wheel_from_the_copied_files_alone(tmp_path: Path) -> None:
    """Replays the builder's COPY + `pip wheel .` on exactly the files the Dockerfile copies."""
    context = tmp_path / "context"
    for sources, dest in context_copies(stages()["builder"]):
        for source in sources:
            src = REPO / source
            if src.is_dir():
                # COPY dir/ dest/ copies the directory's contents into dest.
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(src, context / dest, ignore=ignore, dirs_exist_ok=True)
            else:
                target = context / dest / src.name if dest.endswith("/") else context / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
    wheels = tmp_path / "wheels"
    # No network here: build with the setuptools already installed, and our wheel only.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = wheels.glob("kubespan_discovery-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        text = zf.read(entry_points).decode()
    for script, entry in console_scripts().items():
        assert f"{script} = {entry}" in text
    for package in pyproject()["tool"]["setuptools"]["packages"]:
        assert f"{package.replace('.', '/')}/__init__.py" in names, f"{package} not in the wheel"
    for package, patterns in pyproject()["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            for data in (REPO / package.replace(".", "/")).glob(pattern):
                name = data.relative_to(REPO).as_posix()
                assert name in names, f"package data {name} not in the wheel"

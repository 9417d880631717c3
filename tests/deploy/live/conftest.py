"""Live deployment tests: the images built and run with podman (`make test-deploy`, as root).

`make test` collects this directory too, and every test here then skips, saying so: they take
minutes and need podman, so only `make test-deploy` (which sets DEPLOY_LIVE=1 and installs
podman, podman-compose and the Helm library) runs them. Under DEPLOY_LIVE=1 a missing
requirement is an error, never a skip.

The images are built once per session; their build times and sizes, and the failover figures
of the HA test, are printed at the end of the run (docs/operations.md quotes them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy.deploy_support import DEPLOY, REPO
from tests.deploy.live.bases import Bases, ensure_bases
from tests.deploy.live.figures import FIGURES, record
from tests.deploy.live.podman import build, image_size, missing_tools

HERE = Path(__file__).resolve().parent
SERVICE_IMAGE = "localhost/kubespan-discovery:test"
AGENT_IMAGE = "localhost/kubespan-agent:test"


def live_requested() -> bool:
    return os.environ.get("DEPLOY_LIVE") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if live_requested():
        return
    skip = pytest.mark.skip(reason="live deployment test: run by `make test-deploy` (as root)")
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("deployment figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def bases() -> Bases:
    if os.geteuid() != 0:
        pytest.fail("the live deployment tests need root (podman, debootstrap, namespaces)")
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `make test-deploy` installs them")
    built: list[str] = []
    result = ensure_bases(built)
    for line in built:
        record(f"base image {line}")
    return result


def _build(tag: str, target: str, bases: Bases) -> str:
    seconds = build(
        REPO,
        tag,
        file=DEPLOY / "Dockerfile",
        target=target,
        build_args={"PYTHON_IMAGE": bases.python},
    )
    size = image_size(tag) / 1e6
    record(f"{target} image: build {seconds:.0f}s (layer cache may apply), {size:.0f} MB")
    return tag


@pytest.fixture(scope="session")
def service_image(bases: Bases) -> str:
    return _build(SERVICE_IMAGE, "service", bases)


@pytest.fixture(scope="session")
def agent_image(bases: Bases) -> str:
    return _build(AGENT_IMAGE, "agent", bases)

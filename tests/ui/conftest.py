"""Real-browser fixtures: Debian's chromium driven by Playwright, and a real service process.

Playwright's own browser download cannot work here (and is not needed): the tests launch the
system chromium by `executable_path`. Without it the tests skip, except under CI=true, where
they fail: `make test` installs chromium (sysdeps) when run as root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.process import ServiceProcess, free_port

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "Debian's chromium is not installed (make sysdeps installs it as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true: the browser tests must run")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where chromium refuses its sandbox.
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def start_service(tmp_path: Path, http_port: int | None = None) -> ServiceProcess:
    """A discovery-service on SQLite in `tmp_path`, logging every request (the access log)."""
    extra = ["--access-log", "--log-level", "info", "--rate-limit", "0"]
    port = http_port if http_port is not None else free_port()
    return ServiceProcess(
        storage=f"sqlite:///{tmp_path}/events.db", extra=extra, http_port=port
    ).start()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = start_service(tmp_path)
    try:
        yield proc
    finally:
        proc.stop()

"""Every deployment file parses, and the operations guide points at files that exist."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_support import DEPLOY, DOCS, REPO

# Helm templates are Go templates that render to YAML (tests/deploy/live/test_helm_chart.py).
YAML_FILES = sorted(
    p
    for p in [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]
    if not (p.is_relative_to(DEPLOY / "helm") and "templates" in p.parts)
)


def test_there_is_something_to_check() -> None:
    assert len(YAML_FILES) >= 10


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


def test_the_operations_guide_names_only_existing_files() -> None:
    guide = (DOCS / "operations.md").read_text()
    named = set(re.findall(r"`(deploy/[^`\s]+)`", guide))
    named |= {m for m in re.findall(r"\]\(((?:\.\./)?[\w./-]+)\)", guide) if not m.startswith("#")}
    assert named
    for name in named:
        base = DOCS if name.startswith("../") else REPO
        assert (base / name).exists() or (DOCS / name).exists(), f"{name} does not exist"


@pytest.mark.parametrize("script", ["healthcheck.py", "sqlite-backup.py"])
def test_scripts_run_from_a_checkout(script: str) -> None:
    path = DEPLOY / script
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(path, os.X_OK), f"chmod +x deploy/{script}"

"""Alert rules: well formed, about metrics the service really exports, and documented."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from discovery.runtime import Runtime
from discovery.settings import Settings
from tests.deploy.deploy_support import DEPLOY, DOCS, optional_tool

PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
SEVERITIES = {"critical", "warning", "info"}
# Sample names a family exposes, by its type.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_are_complete() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


@pytest.mark.anyio
async def test_rules_use_only_metrics_the_service_exports() -> None:
    runtime = Runtime(Settings(storage="memory://", rate_limit=0), listeners=False)
    await runtime.start()
    try:
        # Families, not samples: a labelled counter has no samples before its first increment.
        families = {m.name: m.type for m in runtime.metrics.registry.collect()}
    finally:
        await runtime.stop()
    samples = {name + sfx for name, kind in families.items() for sfx in SUFFIXES[kind]}
    for rule in _rules():
        for metric in re.findall(r"\b(discovery_[a-z0-9_]+)", rule["expr"]):
            assert metric in samples, f"{rule['alert']}: {metric} is not exported"


def test_every_alert_is_explained_in_the_operations_guide() -> None:
    guide = (DOCS / "operations.md").read_text()
    for rule in _rules():
        assert rule["alert"] in guide, f"docs/operations.md does not explain {rule['alert']}"


def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = optional_tool("promtool", "prometheus")
    for command in (["check", "rules", ALERTS.name], ["test", "rules", "alerts.test.yaml"]):
        result = subprocess.run(
            [promtool, *command],
            cwd=PROMETHEUS,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr

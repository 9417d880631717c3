"""The CLI's setup helpers: gen-secrets to a private file, config permissions, run --help."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kubespan.__main__ import _warn_if_readable
from kubespan.config import load_config
from tests.kubespan.test_cli import run_cli


def test_gen_secrets_output_is_a_0600_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "config.yaml"
    out_file.write_text("old")
    out_file.chmod(0o644)  # an existing file is made private too
    code, out, _ = run_cli(
        ["gen-secrets", "--endpoint", "http://10.0.0.1:3001", "--output", str(out_file)], capsys
    )
    assert (code, out) == (0, "")
    assert out_file.stat().st_mode & 0o777 == 0o600
    assert load_config(out_file.read_text()).discovery.endpoints[0].url == "http://10.0.0.1:3001"
    code, _, err = run_cli(
        ["gen-secrets", "--endpoint", "http://x:1", "--output", str(tmp_path / "no/such")],
        capsys,
    )
    assert code == 1 and err.startswith("kubespan: gen-secrets: ") and "no/such" in err


def test_a_config_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("x")
    os.chmod(config, 0o600)
    with caplog.at_level(logging.WARNING):
        _warn_if_readable(config)
        _warn_if_readable(tmp_path / "missing.yaml")
    assert caplog.records == []
    os.chmod(config, 0o644)
    with caplog.at_level(logging.WARNING):
        _warn_if_readable(config)
    assert "readable by other users (mode 0644)" in caplog.text


def test_run_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["run", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert "(default: /etc/kubespan/config.yaml)" in flat
    assert "(default: /var/lib/kubespan)" in flat
    for default in ("mesh.port 51820", "timing.endpoint_timeout 6s", "timing.peer_down 45s",
                    "timing.reconcile 30s", "timing.ttl 30m"):  # fmt: skip
        assert default in flat

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubespan.__main__ import main
from kubespan.config import load_config
from kubespan.status_api import StatusServer
from tests.kubespan.test_status import STATUS, FakeSource

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cluster: {id: x}\n", "cluster.secret: required"),
        (
            "cluster: {id: x, secret: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='}\n"
            "discovery: {endpoints: ['http://d:3001']}\nmesh: {mtu: 100}\n",
            "mesh.mtu: must be an integer between 1280 and 9000",
        ),
        ("cluster: [\n", "invalid YAML"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    code, out, err = run_cli(["run", "--config", str(config), "--state-dir", str(tmp_path)], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(f"kubespan: config {config}: ")
    assert message in err
    assert "Traceback" not in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, err = run_cli(["run", "--config", str(missing)], capsys)
    assert code == 2
    assert err == f"kubespan: config {missing}: cannot read: No such file or directory\n"


def test_gen_secrets_prints_a_loadable_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["gen-secrets", "--endpoint", "http://10.0.0.1:3001"], capsys)
    assert code == 0
    config = load_config(out)
    assert [e.url for e in config.discovery.endpoints] == ["http://10.0.0.1:3001"]
    assert len(config.cluster.secret_bytes) == 32
    code, again, _ = run_cli(["gen-secrets", "--endpoint", "http://10.0.0.1:3001"], capsys)
    assert load_config(again).cluster.secret != config.cluster.secret, "fresh every time"


def test_gen_secrets_rejects_a_bad_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["gen-secrets", "--endpoint", "ftp://x"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("kubespan: gen-secrets: discovery.endpoints[0]: ")


def test_status_without_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["status", "--state-dir", str(tmp_path)], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("kubespan: no agent running")


@pytest.mark.anyio
async def test_status_members_and_leave_talk_to_the_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = FakeSource()
    server = StatusServer(tmp_path / "kubespan.sock", source)
    await server.start()
    try:
        state = ["--state-dir", str(tmp_path)]
        code, out, _ = await asyncio.to_thread(run_cli, ["status", "--json", *state], capsys)
        assert code == 0 and json.loads(out) == STATUS
        code, out, _ = await asyncio.to_thread(run_cli, ["status", *state], capsys)
        assert code == 0 and out.splitlines()[0].startswith("LABEL")
        code, out, _ = await asyncio.to_thread(run_cli, ["members", "--json", *state], capsys)
        assert code == 0 and json.loads(out) == [{"nodename": "n1"}]
        code, out, _ = await asyncio.to_thread(run_cli, ["leave", *state], capsys)
        assert code == 0 and source.left == 1
        assert "from http://d:3001" in out
    finally:
        await server.close()


def test_python_dash_m_kubespan(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("discovery: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kubespan", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"kubespan: config {config}: cluster: required\n"

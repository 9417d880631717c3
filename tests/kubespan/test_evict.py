"""Locked clusters from the agent's side: gen-secrets, the node's signer, `kubespan evict`
and the revoked list, against a real service."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import timedelta
from pathlib import Path

import pytest

from discovery.client import ClientError
from discovery.client.http import HttpDiscoveryClient
from kubespan.__main__ import main
from kubespan.config import load_config
from kubespan.evict import evict, find_node, revoked
from kubespan.identity import NODE_ID_FILE, IdentityError, load_or_create_identity, new_node_id
from kubespan.session import Session
from kubespan.signing import locked_cluster_id, node_signer
from membership import keys
from membership.record import AffiliateRecord
from membership.sealing import ClusterKey, seal_record
from tests.support.live import live_server

TTL = timedelta(minutes=5)
SECRET = os.urandom(32)
SECRET_B64 = base64.b64encode(SECRET).decode()
LOCKED = locked_cluster_id(SECRET)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def config_text(cluster_id: str, url: str) -> str:
    return (
        f"cluster:\n  id: {cluster_id}\n  secret: {SECRET_B64}\ndiscovery:\n  endpoints: [{url}]\n"
    )


def test_gen_secrets_makes_locked_clusters_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["gen-secrets", "--endpoint", "http://10.0.0.1:3001"], capsys)
    config = load_config(out)
    assert code == 0
    assert config.cluster.id == locked_cluster_id(config.cluster.secret_bytes)
    code, out, _ = run_cli(["gen-secrets", "--open", "--endpoint", "http://h:1"], capsys)
    assert code == 0
    assert keys.cluster_key_of(load_config(out).cluster.id) is None


def test_node_signer(tmp_path: Path) -> None:
    identity = load_or_create_identity(tmp_path / "new")
    locked = node_signer(identity, LOCKED, SECRET)
    assert locked is not None and locked.node_id == identity.node_id
    assert node_signer(identity, "talos-open-id", SECRET) is not None
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / NODE_ID_FILE).write_text(new_node_id())
    legacy = load_or_create_identity(tmp_path / "old")
    assert node_signer(legacy, "talos-open-id", SECRET) is None
    with pytest.raises(IdentityError, match="remove the node-id file"):
        node_signer(legacy, LOCKED, SECRET)


@pytest.mark.anyio
async def test_evict_cuts_a_node_out_and_a_replacement_joins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ClusterKey(SECRET_B64)
    signers = {}
    async with live_server() as live:
        config_path = tmp_path / "config.yaml"
        config_path.write_text(config_text(LOCKED, live.url))
        config = load_config(config_path.read_text())
        for name in ("good", "bad"):
            identity = load_or_create_identity(tmp_path / name)
            signer = node_signer(identity, LOCKED, SECRET)
            assert signer is not None
            signers[name] = signer
            record = AffiliateRecord(node_id=identity.node_id, hostname=f"{name}-host")
            async with HttpDiscoveryClient(live.url, signer=signer) as node:
                data = seal_record(key, record, os.urandom(12))
                await node.update(LOCKED, identity.node_id, data=data, endpoints=[], ttl=TTL)
        bad = signers["bad"].node_id
        assert await find_node(config, "bad-host") == bad
        with pytest.raises(ValueError, match="no member named 'nobody'"):
            await find_node(config, "nobody")

        code, out, err = await asyncio.to_thread(
            run_cli, ["evict", "bad-host", "--config", str(config_path)], capsys
        )
        assert (code, out, err) == (0, f"evicted node {bad} from {live.url}\n", "")
        assert await revoked(config) == [bad]
        async with HttpDiscoveryClient(live.url, signer=signers["bad"]) as node:
            assert [a.id for a in await node.list(LOCKED)] == [signers["good"].node_id]
            with pytest.raises(ClientError, match="revoked"):
                await node.update(LOCKED, bad, data=b"back", endpoints=[], ttl=TTL)
        # Evicting again is harmless; a gRPC endpoint cannot take revocations.
        assert await evict(config, bad) == {live.url: None}
        grpc_config = load_config(config_text(LOCKED, "grpc://127.0.0.1:1"))
        assert "no revocations" in str(await evict(grpc_config, bad))

        # The replacement: a fresh state dir, the same config.
        replacement = node_signer(load_or_create_identity(tmp_path / "new"), LOCKED, SECRET)
        assert replacement is not None
        async with HttpDiscoveryClient(live.url, signer=replacement) as node:
            await node.update(LOCKED, replacement.node_id, data=b"r", endpoints=[], ttl=TTL)
            assert len(await node.list(LOCKED)) == 2

        code, _, err = await asyncio.to_thread(
            run_cli, ["evict", "talosid", "--config", str(config_path)], capsys
        )
        assert code == 2 and "no member named 'talosid'" in err


@pytest.mark.anyio
async def test_a_session_signs_through_its_client_factory(tmp_path: Path) -> None:
    identity = load_or_create_identity(tmp_path)
    signer = node_signer(identity, LOCKED, SECRET)
    async with live_server() as live:
        seen: list[object] = []

        def clients(url: str, **kwargs: object) -> HttpDiscoveryClient:
            seen.append(kwargs.get("signer"))
            return HttpDiscoveryClient(url, signer=signer if kwargs else None)

        session = Session(
            live.url,
            cluster_id=LOCKED,
            node_id=identity.node_id,
            key=ClusterKey(SECRET_B64),
            ttl=TTL,
            refresh=TTL,
            clients=clients,
            publication=lambda: None,  # type: ignore[arg-type,return-value]
            on_change=lambda: None,
            on_public_ip=lambda: None,
            client_version="test",
            signer=signer,
        )
        async with HttpDiscoveryClient(live.url, signer=signer) as node:
            await node.update(LOCKED, identity.node_id, data=b"x", endpoints=[], ttl=TTL)
        assert await session.delete_self() is None
        assert seen == [signer]


@pytest.mark.anyio
async def test_members_lists_revoked_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubespan import __main__ as cli

    monkeypatch.setattr(cli, "_query", lambda args, path: [])
    gone = node_signer(load_or_create_identity(tmp_path / "gone"), LOCKED, SECRET)
    assert gone is not None
    async with live_server() as live:
        config_path = tmp_path / "config.yaml"
        config_path.write_text(config_text(LOCKED, live.url))
        args = ["members", "--state-dir", str(tmp_path), "--config", str(config_path)]
        code, out, _ = await asyncio.to_thread(run_cli, args, capsys)
        assert code == 0 and out.endswith("revoked: none\n")
        await evict(load_config(config_path.read_text()), gone.node_id)
        code, out, _ = await asyncio.to_thread(run_cli, args, capsys)
        assert code == 0 and out.endswith(f"revoked (cut out for good):\n  {gone.node_id}\n")
        config_path.write_text("not: [a config")
        code, _, err = await asyncio.to_thread(run_cli, args, capsys)
        assert code == 0 and "revoked nodes not shown" in err

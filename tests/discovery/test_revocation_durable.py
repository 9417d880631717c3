"""Revocations are facts in the log: they survive a snapshot, compaction and a restart, and
an emptied cluster still refuses the revoked key."""

from __future__ import annotations

from pathlib import Path

import pytest

from discovery.core.errors import PermissionDenied
from discovery.settings import Settings
from tests.discovery.signing_support import LOCKED, member, put_proof, revocation
from tests.support.live import in_process

pytestmark = pytest.mark.anyio


async def test_a_revocation_survives_snapshot_compaction_and_restart(tmp_path: Path) -> None:
    settings = Settings(rate_limit=0, storage=f"sqlite:///{tmp_path / 'log.db'}", retention=0)
    evicted = member()
    node_key, signature = revocation(evicted)
    async with in_process(settings) as runtime:
        core = runtime.core
        await core.update_affiliate(
            LOCKED,
            evicted.node_id,
            data=b"x",
            endpoints=[],
            ttl_seconds=300,
            proof=put_proof(evicted, LOCKED),
        )
        await core.revoke_node(LOCKED, node_key, signature)
        assert core.list_affiliates(LOCKED)[1] == []
        await runtime.maintenance.snapshot()
    async with in_process(settings) as runtime:
        core = runtime.core
        assert core.revoked_nodes(LOCKED) == [node_key]
        with pytest.raises(PermissionDenied, match="revoked"):
            await core.update_affiliate(
                LOCKED,
                evicted.node_id,
                data=b"back",
                endpoints=[],
                ttl_seconds=300,
                proof=put_proof(evicted, LOCKED),
            )
        assert core.list_affiliates(LOCKED)[1] == []

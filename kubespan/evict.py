"""`kubespan evict` and the revoked list of `kubespan members`: talk to the discovery
services of the config directly (the agent is not involved: the evicting machine may not run
one, and the node being cut out must not be asked)."""

from __future__ import annotations

import asyncio

from discovery.client import ClientError
from discovery.client.http import HttpDiscoveryClient
from kubespan.config import Config
from kubespan.signing import revocation
from membership import keys
from membership.errors import RecordError, SealingError
from membership.sealing import ClusterKey, open_affiliate

TIMEOUT = 10.0
NO_GRPC = "the Talos gRPC API has no revocations: evict through an http(s) endpoint"


def _http_endpoints(config: Config) -> list[str]:
    return [e.url for e in config.discovery.endpoints if e.url.startswith(("http://", "https://"))]


async def find_node(config: Config, name: str) -> str:
    """The node id of the member whose node id, nodename or hostname is `name`; raises
    ValueError when none (or several) match."""
    if name.startswith(keys.NODE_PREFIX):
        return name
    key = ClusterKey(config.cluster.secret)
    found: set[str] = set()
    for url in _http_endpoints(config):
        async with HttpDiscoveryClient(url, timeout=TIMEOUT) as client:
            try:
                raws = await client.list(config.cluster.id)
            except ClientError:
                continue
        for raw in raws:
            try:
                record = open_affiliate(key, raw.data, raw.endpoints).record
            except (SealingError, RecordError):
                continue
            if name in (record.node_id, record.nodename, record.hostname):
                found.add(raw.id)
    if len(found) != 1:
        what = "no member" if not found else f"{len(found)} members"
        raise ValueError(f"{what} named {name!r}; give the node id ({keys.NODE_PREFIX}...)")
    return found.pop()


async def evict(config: Config, node_id: str) -> dict[str, str | None]:
    """Revoke `node_id` on every endpoint; endpoint -> None on success, else the error."""
    node_key, signature = revocation(config.cluster.secret_bytes, node_id)

    async def one(url: str) -> str | None:
        if not url.startswith(("http://", "https://")):
            return NO_GRPC
        try:
            async with HttpDiscoveryClient(url, timeout=TIMEOUT) as client:
                await client.revoke(config.cluster.id, node_key, signature)
        except ClientError as exc:
            return str(exc)
        return None

    urls = [e.url for e in config.discovery.endpoints]
    return dict(zip(urls, await asyncio.gather(*(one(u) for u in urls)), strict=True))


async def revoked(config: Config) -> list[str]:
    """The node ids revoked on any http(s) endpoint of the config, sorted."""
    ids: set[str] = set()
    for url in _http_endpoints(config):
        try:
            async with HttpDiscoveryClient(url, timeout=TIMEOUT) as client:
                ids.update(
                    keys.node_affiliate_id(k) for k in await client.revocations(config.cluster.id)
                )
        except ClientError:
            continue
    return sorted(ids)

"""FastAPI dependencies: the core, the client IP, admission through the core's rate limit."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from discovery.core import clientip
from discovery.core.errors import InvalidArgument
from discovery.core.service import DiscoveryService
from discovery.settings import Settings


async def get_core(request: Request) -> DiscoveryService:
    core: DiscoveryService = request.app.state.core
    return core


CoreDep = Annotated[DiscoveryService, Depends(get_core)]


def client_ip_of(request: Request) -> IPv4Address | IPv6Address | None:
    """The caller's IP: the transport peer, or a proxy header when settings trust it."""
    settings: Settings = request.app.state.settings
    return clientip.resolve(
        request.client.host if request.client else None,
        request.headers.get,
        trust_x_real_ip=settings.trust_x_real_ip,
        trust_x_forwarded_for=settings.trust_x_forwarded_for,
    )


async def get_client_ip(request: Request) -> IPv4Address | IPv6Address | None:
    return client_ip_of(request)


ClientIPDep = Annotated[IPv4Address | IPv6Address | None, Depends(get_client_ip)]


async def admitted_core(request: Request) -> DiscoveryService:
    """The core, once it has admitted the caller (a rate-limit token; HTTP never waits).

    One dependency rather than a chain: FastAPI's dependency resolution costs more per
    request than the rest of a write's CPU work, and this sits on every API call.
    """
    core: DiscoveryService = request.app.state.core
    await core.admit(client_ip_of(request))
    return core


AdmittedCoreDep = Annotated[DiscoveryService, Depends(admitted_core)]


def path_id(raw: str, what: str) -> str:
    """Decode one percent-encoded path segment (IDs may contain '/', '+', '=')."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid percent-encoded UTF-8") from exc

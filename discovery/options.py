"""From the settings to the options of each part: the core's limits, the listener's caps."""

from __future__ import annotations

import contextlib
import resource

from discovery.core.values import CoreOptions
from discovery.http.guard import ConnectionLimits
from discovery.settings import Settings


def core_options(settings: Settings) -> CoreOptions:
    return CoreOptions(
        limits=settings.limits(),
        watch_buffer=settings.watch_buffer,
        watches_per_client=settings.max_watches_per_client,
        watches=settings.max_watches or _descriptor_budget(),
        watch_lifetime=settings.watch_lifetime,
        affiliates_per_client=settings.max_affiliates_per_client,
        clusters_per_client=settings.max_clusters_per_client,
        rate_limit=settings.rate_limit,
        rate_burst=settings.rate_burst,
        redirect_endpoint=settings.redirect_endpoint,
        disable_client_ip=settings.disable_client_ip,
    )


def _descriptor_budget() -> int:
    """Connections (and so watches) the descriptor limit affords, after raising the soft limit
    to the hard one (as Go's runtime does): past it, accept() fails for everyone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    # Keep a fifth (at least 100) for listeners, storage, other clients and their requests.
    return max(1, soft - max(100, soft // 5))


def connection_limits(settings: Settings) -> ConnectionLimits:
    # Behind a proxy every connection comes from the proxy: the per-client cap is its job.
    proxied = settings.trust_x_real_ip or settings.trust_x_forwarded_for
    return ConnectionLimits(
        per_client=0 if proxied else settings.max_connections_per_client,
        total=settings.max_connections or _descriptor_budget(),
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
    )

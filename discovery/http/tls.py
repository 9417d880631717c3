"""Certificate reload: new TLS handshakes pick up a renewed certificate without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl

log = logging.getLogger("discovery.tls")


def _mtimes(*paths: str) -> tuple[float, ...]:
    return tuple(os.stat(p).st_mtime_ns for p in paths)


async def reload_on_change(
    context: ssl.SSLContext, cert: str, key: str, *, interval: float = 5.0
) -> None:
    """Reload `cert`/`key` into `context` whenever either file changes. Runs until cancelled.

    SSLContext.load_cert_chain replaces the chain used for handshakes from then on, and
    connections already open keep theirs, so a renewal (certbot, cert-manager) needs no
    restart. A half-written pair fails to load and is retried at the next check.
    """
    seen = _mtimes(cert, key)
    while True:
        await asyncio.sleep(interval)
        try:
            now = _mtimes(cert, key)
            if now != seen:
                context.load_cert_chain(cert, key)
                seen = now
                log.info("certificate reloaded", extra={"cert": cert})
        except (OSError, ssl.SSLError) as exc:
            log.warning("certificate reload failed", extra={"error": str(exc)})

#!/usr/bin/env python3
"""Container health check for discovery-service: exit 0 when GET /healthz answers 200.

Standard library only (the slim image has no curl). It finds the listener the way the service
does, from DISCOVERY_HTTP_ADDR (default ":3001"), and speaks HTTPS when DISCOVERY_TLS_CERT is
set. Usage: discovery-healthcheck [PATH]   (default /healthz; /readyz checks readiness).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def probe_url(path: str = "/healthz") -> str:
    addr = os.environ.get("DISCOVERY_HTTP_ADDR", ":3001")
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    # A wildcard bind answers on loopback.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if os.environ.get("DISCOVERY_TLS_CERT") else "http"
    return f"{scheme}://{host}:{port}{path}"


def main(argv: list[str]) -> int:
    url = probe_url(argv[1] if len(argv) > 1 else "/healthz")
    context = None
    if url.startswith("https:"):
        # The certificate names the public host, not loopback: this checks liveness, not trust.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The client on another address that every attack test keeps being served (127.0.0.2)."""

from __future__ import annotations

import time

import httpx


def bystander_served(url: str, affiliate: str = "a") -> None:
    """A write from 127.0.0.2 is answered 200 within a second."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=url, timeout=5, transport=transport) as http:
        started = time.monotonic()
        r = http.put(f"/v1/clusters/c/affiliates/{affiliate}", json={"data": "ZA==", "ttl": 60})
        assert r.status_code == 200
        assert time.monotonic() - started < 1.0

"""What signed writes cost: signed `PUT`s to a locked cluster beside unsigned `PUT`s of the same
shape to an open one, in the same run, on the same service (SQLite, rate limit off).

Every request is signed before the load starts (each node with its own key and the cluster's
endorsement), so the load generator spends nothing on Ed25519 and the server's verification is
what the difference measures. A signature stays valid for its 60 s window, and a signed `PUT`
may be repeated within it, so `wrk` cycles over the prepared requests; a round is well under
the window, and each round signs afresh.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.external import Sample, wrk_script
from bench.http_update import median_of
from bench.servers import free_port, running, service_argv
from discovery.client.signing import RequestSigner
from kubespan.signing import locked_cluster_id
from membership.secrets import decode_cluster_secret, new_cluster_secret

NODES = 200
CONNECTIONS = (32, 256)


def _requests(signed: bool, secret: bytes, signers: list[RequestSigner]) -> list[str]:
    """Raw HTTP requests (wrk.format arguments as Lua), one per node."""
    cluster = locked_cluster_id(secret) if signed else "open-cluster"
    out = []
    for signer in signers:
        body = json.dumps(
            {
                "data": base64.b64encode(os.urandom(600)).decode(),
                "endpoints": [base64.b64encode(os.urandom(16)).decode() for _ in range(2)],
                "ttl": 1800,
            }
        ).encode()
        path = f"/v1/clusters/{quote(cluster, safe='')}/affiliates/{quote(signer.node_id)}"
        headers = {"Content-Type": "application/json"}
        if signed:
            headers.update(signer.http_put(path, body))
        lua_headers = ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())
        out.append(f'wrk.format("PUT", {_lua(path)}, {{{lua_headers}}}, {_lua(body.decode())})')
    return out


def _lua(text: str) -> str:
    # A long bracket takes the text verbatim (nothing here holds "]==]").
    return f"[==[{text}]==]"


def _script(requests: list[str]) -> str:
    return (
        "local requests = {}\nlocal i = 0\nfunction init(args)\n"
        + "".join(f"  requests[#requests + 1] = {r}\n" for r in requests)
        + "  i = math.random(#requests)\nend\n"
        + "function request()\n  i = i % #requests + 1\n  return requests[i]\nend\n"
    )


def _wrk(port: int, server: int, script: str, connections: int, duration: float) -> Sample:
    return wrk_script(port, script, connections=connections, duration=duration, server=server)


async def run(duration: float = 5.0, rounds: int = 3) -> dict[str, Any]:
    """Median of `rounds` alternating rounds of each target at each connection count."""
    load_average = os.getloadavg()
    secret = decode_cluster_secret(new_cluster_secret(os.urandom(32)))
    signers = [
        RequestSigner(Ed25519PrivateKey.generate(), cluster_secret=secret) for _ in range(NODES)
    ]
    samples: dict[tuple[str, int], list[Sample]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with running(service_argv(f"sqlite:///{tmp}/events.db", port), port, "/readyz") as proc:
            for _ in range(rounds):
                for name, signed in (("put_unsigned", False), ("put_signed", True)):
                    script = _script(_requests(signed, secret, signers))
                    _wrk(port, proc.pid, script, 32, 1.0)  # warm-up: creates the affiliates
                    for c in CONNECTIONS:
                        sample = _wrk(port, proc.pid, script, c, duration)
                        samples.setdefault((name, c), []).append(sample)
    out: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in load_average]}
    for (name, c), group in samples.items():
        out.setdefault(name, {})[f"c{c}"] = median_of(group)
    for c in CONNECTIONS:
        signed = out["put_signed"][f"c{c}"]
        unsigned = out["put_unsigned"][f"c{c}"]
        out[f"ratio_signed_vs_unsigned_c{c}"] = round(
            signed["throughput_rps"] / (unsigned["throughput_rps"] or 1.0), 3
        )
        out[f"extra_cpu_us_per_signed_put_c{c}"] = round(
            signed["server_cpu_us_per_req"] - unsigned["server_cpu_us_per_req"], 1
        )
    out["settings"] = {
        "duration_s": duration,
        "rounds": rounds,
        "nodes": NODES,
        "loadgen": "wrk -t1 --latency, Lua-prebuilt PUTs (600 B data, 2 endpoints)",
    }
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        "| target | connections | requests/s | p50 ms | p99 ms | server us/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("put_unsigned", "put_signed"):
        for c in CONNECTIONS:
            s = result[name][f"c{c}"]
            rows.append(
                f"| {name} | {c} | {s['throughput_rps']:,.0f} | {s['p50_ms']:.1f} | "
                f"{s['p99_ms']:.1f} | {s['server_cpu_us_per_req']:.0f} |"
            )
    return "\n".join(rows)

"""External C load generators: `wrk` for HTTP/1.1 and `h2load` for gRPC (HTTP/2).

A Python load generator saturates its own core long before a uvicorn server does, so on a
2-core machine it measures itself; these tools cost a fraction of that. Each run reports how
busy the load generator was (CPU seconds over wall seconds, from the kernel's rusage) so a
reader can tell when the client, not the server, was the limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.servers import tree_cpu_seconds

_PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client"}


def require(tool: str) -> str:
    """The tool's path; installs its Debian package when running as root and it is missing."""
    path = shutil.which(tool)
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", _PACKAGES[tool]], env=env, check=False)
        path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found: install the Debian package {_PACKAGES[tool]}")
    return path


@dataclass
class Sample:
    """One load-generator run against one target."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    loadgen_cpu_pct: float
    # The server's CPU time (every thread) per request: unlike requests/s, this barely moves
    # when other processes share the cores, so it compares runs made at different loads.
    server_cpu_us: float = float("nan")
    server_cpu_pct: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "throughput_rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
            "loadgen_cpu_pct": round(self.loadgen_cpu_pct, 1),
            "server_cpu_us_per_req": round(self.server_cpu_us, 1),
            "server_cpu_pct": round(self.server_cpu_pct, 1),
        }


def _run_all(
    argvs: Sequence[Sequence[str]], server: int | None = None
) -> tuple[list[str], float, float, float]:
    """Run the commands side by side; (their outputs, CPU seconds of all, wall seconds, and
    CPU seconds of the `server` process and its children meanwhile)."""
    server_before = tree_cpu_seconds(server) if server else 0.0
    started = time.monotonic()
    procs = [
        subprocess.Popen(list(a), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for a in argvs
    ]
    outputs, cpu = [], 0.0
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            raise RuntimeError(f"{argvs[0][0]} failed ({proc.returncode}): {out[-500:]}")
        outputs.append(out)
    wall = time.monotonic() - started
    return outputs, cpu, wall, (tree_cpu_seconds(server) - server_before) if server else 0.0


# -- wrk -----------------------------------------------------------------------------------

_WRK_SCRIPT = """
local clusters, affiliates = {clusters}, {affiliates}
local payload = "{payload}"
local tail = '","endpoints":["{ep1}","{ep2}"],"ttl":1800}}'
local requests = {{}}
local i = 0
function init(args)
  local headers = {{["Content-Type"] = "application/json"}}
  for a = 0, affiliates - 1 do
    for c = 0, clusters - 1 do
      local k = a * clusters + c
      local body = '{{"data":"' .. string.format("%08d", k) .. payload:sub(9) .. tail
      local path = "/v1/clusters/c" .. c .. "/affiliates/a" .. a
      requests[#requests + 1] = wrk.format("{method}", path, headers, body)
    end
  end
  i = math.random(#requests)
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk_put(
    port: int,
    *,
    connections: int,
    duration: float,
    payload: str,
    endpoints: tuple[str, str],
    clusters: int = 100,
    affiliates: int = 100,
    method: str = "PUT",
    server: int | None = None,
) -> Sample:
    """`wrk -t1` PUTs cycling over clusters x affiliates, each body new for its affiliate."""
    script = _WRK_SCRIPT.format(
        clusters=clusters,
        affiliates=affiliates,
        payload=payload,
        ep1=endpoints[0],
        ep2=endpoints[1],
        method=method,
    )
    return wrk_script(port, script, connections=connections, duration=duration, server=server)


def wrk_script(
    port: int, script: str, *, connections: int, duration: float, server: int | None = None
) -> Sample:
    """`wrk -t1` driven by a Lua `script`; the server's CPU is measured when `server` is given."""
    wrk = require("wrk")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "put.lua"
        path.write_text(script)
        argv = [
            wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s",
            "-s", str(path), f"http://127.0.0.1:{port}",
        ]  # fmt: skip
        (out,), cpu, wall, served = _run_all([argv], server)
    return _with_server(parse_wrk(out, cpu / wall * 100), served, duration, server)


def _with_server(sample: Sample, served: float, loaded: float, server: int | None) -> Sample:
    """Add the server's CPU per request; `loaded` is how long the load ran (warm-up included,
    at the same rate as the measured window), start-up of the tool left out."""
    if server and sample.rps:
        sample.server_cpu_us = served / (sample.rps * loaded) * 1e6
        sample.server_cpu_pct = served / loaded * 100
    return sample


def parse_wrk(out: str, cpu_pct: float) -> Sample:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return Sample(
        rps,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        errors,
        cpu_pct,
    )


# -- h2load ----------------------------------------------------------------------------------


def grpc_frame(message: bytes) -> bytes:
    """One length-prefixed, uncompressed gRPC message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_grpc(
    port: int,
    path: str,
    frames: Sequence[bytes],
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
    server: int | None = None,
) -> Sample:
    """Closed-loop unary calls (one in flight per connection) from `len(frames)` h2load
    processes, each sending its own prebuilt request (h2load sends one body per process);
    the connections are spread evenly over the processes."""
    h2load = require("h2load")
    procs = min(len(frames), connections)
    with tempfile.TemporaryDirectory() as tmp:
        argvs = []
        for i in range(procs):
            share = connections // procs + (1 if i < connections % procs else 0)
            (Path(tmp) / f"{i}.bin").write_bytes(frames[i])
            argvs.append(
                [
                    h2load,
                    "-t1",
                    f"-c{share}",
                    "-m1",
                    f"-D{int(duration * 1000)}ms",
                    f"--warm-up-time={int(warmup * 1000)}ms",
                    "-d",
                    f"{tmp}/{i}.bin",
                    "-H",
                    "content-type: application/grpc",
                    "-H",
                    "te: trailers",
                    f"--log-file={tmp}/{i}.log",
                    f"http://127.0.0.1:{port}{path}",
                ]
            )
        outputs, cpu, wall, served = _run_all(argvs, server)
        latencies: list[float] = []
        for i in range(procs):
            for line in (Path(tmp) / f"{i}.log").read_text().splitlines():
                fields = line.split("\t")
                if len(fields) >= 3:
                    latencies.append(int(fields[2]) / 1000)
    rps = errors = 0.0
    for out in outputs:
        rps += float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
        if m := re.search(r"requests: .* (\d+) failed, (\d+) errored, (\d+) timeout", out):
            errors += sum(int(g) for g in m.groups())
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    # Only the measured window is logged; the CPU share covers warm-up too (same load).
    sample = Sample(rps, pct(50), pct(99), int(errors), cpu / wall * 100)
    return _with_server(sample, served, warmup + duration, server)
